"""Issue 32's defects that are fixed: a verdict from too few images, a comparison with nothing to
compare, and commands for the user to paste that must be shell-quoted."""

import json
import os
import pathlib
import shlex
import subprocess
import sys

import pytest

from test_integrity_round3 import _scores
from test_pipeline import _candidate

ROOT = str(pathlib.Path(__file__).resolve().parents[1])


def _strict_json(text):
    def refuse(constant):
        raise ValueError("not JSON: %s" % constant)
    return json.loads(text, parse_constant=refuse)


def _production(tmp_path, monkeypatch, production_scores):
    from launcher.decide import compare as compare_lib
    from launcher.decide import production as production_lib
    prod = str(tmp_path / "prod")
    production_lib.promote(_candidate(tmp_path / "old", 0.6), prod, "old")
    monkeypatch.setattr(compare_lib, "evaluate_all", lambda *args, **kwargs: {"synthetic": production_scores})
    return prod


def test_one_eval_image_gives_no_better_verdict_and_auto_promotes_nothing(tmp_path, monkeypatch):
    from launcher.decide import production as production_lib
    from launcher.decide import report
    from launcher.decide import compare as compare_lib
    from launcher.decide import promotion
    prod = _production(tmp_path, monkeypatch, _scores(tmp_path / "scores_old", hits=0, images=1))
    comparison = compare_lib.compare({"synthetic": _scores(tmp_path / "scores_new", hits=1, images=1)}, prod, "unused")
    assert comparison["difference"] > 0 and comparison["ci95"][0] > 0          # the interval alone says better
    assert comparison["verdict"] == "within noise" and comparison["better"] is False
    assert "at least %d eval images" % compare_lib.MIN_IMAGES in comparison["reason"]
    promotion = promotion.promote(comparison, _candidate(tmp_path / "new", 0.9), prod, mode="auto", run="new")
    assert promotion["promoted"] is False and production_lib.read_pointer(prod)["current"]["name"] == "old"
    sentence, _ = report.verdict_sentence(comparison, promotion)
    assert "within noise" in sentence and "at least %d eval images" % compare_lib.MIN_IMAGES in sentence


def test_eval_images_without_boxes_have_nothing_to_compare_and_the_file_is_json(tmp_path, monkeypatch):
    from launcher.decide import report
    from launcher.decide import compare as compare_lib

    def no_boxes(folder):
        folder.mkdir(parents=True)
        rows = [{"image": i, "class": 1, "gt": 0, "scores": [0.9], "matched": [0], "ignored": [0], "boxes": [],
                 "gt_boxes": []} for i in range(12)]
        (folder / "matches.json").write_text(json.dumps({"images": list(range(12)), "iou_thresholds": [
            0.5 + 0.05 * k for k in range(10)], "max_detections": 100, "rows": rows}))
        return {"AP": -1.0, "matches": str(folder / "matches.json"), "per_class_AP": {"c1": -1.0}}

    prod = _production(tmp_path, monkeypatch, no_boxes(tmp_path / "scores_old"))
    folder = tmp_path / "run"
    comparison = compare_lib.compare({"synthetic": no_boxes(tmp_path / "scores_new")}, prod, "unused", folder=str(folder))
    assert comparison["verdict"] == "nothing to compare" and comparison["better"] is False
    assert comparison["resamples"] == 0 and comparison["ci95"] is None
    written = _strict_json((folder / "comparison.json").read_text())
    assert written["verdict"] == "nothing to compare" and written["ci95"] is None
    assert all(interval["ci95"] is None for interval in written["intervals"].values())
    sentence, _ = report.verdict_sentence(written, {"promoted": False, "promote_command": "x"})
    assert "nothing to compare" in sentence


def test_pasted_promote_and_rollback_commands_get_exactly_their_paths(tmp_path):
    """The commands are pasted into bash, from a folder of their own: the odd paths arrive whole,
    and the ``$(...)`` in one is not run."""
    from launcher.decide import production as production_lib
    from launcher.decide import report
    from launcher.decide import promotion
    odd = tmp_path / "a work dir $(touch pwned)"
    candidate, prod = _candidate(odd / "cand idate", 0.5), str(odd / "prod 'one'")
    command = promotion.promote_command(candidate, prod, "r1")
    assert shlex.split(command) == ["python", "-m", "launcher", "pipeline", "promote", "--candidate", str(candidate),
                                    "--production", prod, "--run", "r1"]
    production_lib.promote(_candidate(tmp_path / "first", 0.4), prod, "r0")
    done = paste(command, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert production_lib.read_pointer(prod)["current"]["name"] == "r1"
    _, rollback = report.verdict_sentence({"metric": "real.AP", "production": None, "candidate": 0.5,
                                           "verdict": "first model", "images": 3},
                                          {"promoted": True, "production_dir": prod})
    assert shlex.split(rollback) == ["python", "-m", "launcher", "pipeline", "promote", "--production", prod,
                                     "--rollback"]
    done = paste(rollback, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert production_lib.read_pointer(prod)["current"]["name"] == "r0"
    assert not list(tmp_path.glob("pwned")) and not list(odd.glob("pwned"))


def paste(command, cwd):
    """Run ``command`` as bash gets it pasted, with this interpreter as ``python``."""
    shim = cwd / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "python").write_text('#!/bin/sh\nexec %s "$@"\n' % shlex.quote(sys.executable))
    (shim / "python").chmod(0o755)
    env = dict(os.environ, PATH="%s:%s" % (shim, os.environ["PATH"]), PYTHONPATH=ROOT)
    return subprocess.run(["bash", "-c", command], cwd=str(cwd), env=env, capture_output=True, text=True,
                          timeout=300)


def test_leaderboard_intervals_leave_out_resamples_without_ground_truth(tmp_path):
    """Of 3 images only one holds a box: about 30% of the resamples miss it, and pycocotools' -1
    for them is no score."""
    from launcher.decide import leaderboard
    entries = []
    for name, kind, hits in (("new", "candidate", 1), ("production (old)", "production", 0)):
        folder = tmp_path / name
        folder.mkdir()
        rows = [{"image": 0, "class": 1, "gt": 1, "scores": [0.9], "matched": [1023 if hits else 0], "ignored": [0],
                 "boxes": [], "gt_boxes": []}]
        (folder / "matches.json").write_text(json.dumps({"images": [0, 1, 2], "iou_thresholds": [
            0.5 + 0.05 * k for k in range(10)], "max_detections": 100, "rows": rows}))
        entries.append({"run": name, "kind": kind, "scores": {"synthetic": {"matches": str(folder / "matches.json")}}})
    used = leaderboard._intervals(entries, "synthetic.AP", 200)
    assert 0 < used < 200 and 200 - used > 30
    assert entries[0]["ci95"] == pytest.approx([1.0, 1.0]) and entries[1]["ci95"] == pytest.approx([0.0, 0.0])
    assert entries[0]["vs_production"]["ci95"] == pytest.approx([1.0, 1.0])
    board = {"metric": "synthetic.AP", "images": 3, "dataset": "d", "real_dataset": None, "resamples": used,
             "resamples_left_out": 200 - used, "entries": [dict(e, rank=i + 1, model="m", value=e["value"],
                                                                per_class={}) for i, e in enumerate(entries)]}
    assert "%d resamples held no ground-truth box and were left out" % (200 - used) in leaderboard.render(board)


def test_a_damaged_run_folder_is_left_out_of_the_leaderboard_and_named(tmp_path):
    from launcher.decide import leaderboard
    from trainer import engine
    work, data = tmp_path / "work", tmp_path / "data"
    data.mkdir()
    (data / "summary.json").write_text(json.dumps({"num_classes": 1, "splits": {"train": {"images": 1},
                                                                                "eval": {"images": 20}}}))
    (data / "label_map.pbtxt").write_text('item {\n  id: 1\n  name: "tea"\n}\n')
    good = pathlib.Path(_candidate(work / "runs" / "good" / "candidate", 0.5))
    digest = engine.checkpoint_digest(engine.choose_checkpoint(str(good), "latest"))
    scored = _scores(good / "eval_synthetic", hits=12)
    metrics = {"dataset": str(data), "split": "eval", "checkpoint_digest": digest, "AP": scored["AP"], "step": 1}
    (good / "eval_synthetic" / "metrics.json").write_text(json.dumps(metrics))
    for run, candidate in (("good", good), ("deleted", work / "runs" / "deleted" / "candidate")):
        (work / "runs" / run).mkdir(parents=True, exist_ok=True)
        (work / "runs" / run / "promotion.json").write_text(json.dumps({"candidate_dir": str(candidate), "time": 1}))
    (work / "runs" / "cut").mkdir()
    (work / "runs" / "cut" / "promotion.json").write_text('{"candidate_dir": "/x", "ti')
    (work / "production").mkdir()
    (work / "production" / "production.json").write_text("not a pointer")
    board = leaderboard.build(str(work), str(work / "production"), dataset=str(data), today="2026-12-07")
    assert [e["run"] for e in board["entries"]] == ["good"]
    why = {s["run"]: s["why"] for s in board["skipped"]}
    assert sorted(why) == ["cut", "deleted", "production"]
    assert "its promotion.json cannot be read" in why["cut"] and "could not be scored" in why["deleted"]
    assert "production.json is not valid JSON" in why["production"]
    page = (work / "leaderboards" / "2026-12-07" / "report.html").read_text()
    assert "Left out, damaged: " in page and "deleted" in page


def _per_class_scores(folder, hits, classes, new=()):
    """An evaluation of 20 images, each with one box of every class in ``classes`` ({id: name}), of
    which the first ``hits[id]`` are found; ``new``: names of the data's classes it did not score."""
    folder.mkdir(parents=True)
    rows = [{"image": i, "class": c, "gt": 1, "scores": [0.9 - 0.01 * i], "matched": [1023 if i < hits[c] else 0],
             "ignored": [0], "boxes": [], "gt_boxes": []} for c in classes for i in range(20)]
    doc = {"images": list(range(20)), "classes": sorted(classes), "iou_thresholds": [0.5 + 0.05 * k for k in range(10)],
           "max_detections": 100, "rows": rows}
    (folder / "matches.json").write_text(json.dumps(doc))
    from trainer import cocoap
    table = cocoap.Table(doc)
    scores = {"AP": table.metric("AP"), "matches": str(folder / "matches.json"),
              "per_class_AP": {classes[c]: v for c, v in table.per_class("AP").items()}}
    if new:
        scores["classes_new_to_model"] = list(new)
    return scores


def test_a_class_new_to_production_is_left_out_of_the_comparison_and_shown_for_the_candidate(tmp_path, monkeypatch):
    """Seed 004's retraining after a new product: production knows tea and milk, the candidate and
    the data know soap too. Both are compared on tea and milk; soap is the candidate's alone."""
    from launcher.decide import compare as compare_lib
    from launcher.decide import leaderboard, report
    from trainer import cocoap
    old = {1: "tea", 2: "milk"}
    prod = _production(tmp_path, monkeypatch, _per_class_scores(tmp_path / "scores_old", {1: 10, 2: 10}, old,
                                                                new=["soap"]))
    candidate = _per_class_scores(tmp_path / "scores_new", {1: 12, 2: 11, 3: 2}, {**old, 3: "soap"})
    folder = tmp_path / "run"
    comparison = compare_lib.compare({"synthetic": candidate}, prod, "unused", folder=str(folder))
    shared = cocoap.Table(cocoap.only_classes(json.loads(pathlib.Path(candidate["matches"]).read_text()), [1, 2]))
    assert comparison["candidate"] == pytest.approx(shared.metric("AP"))
    assert comparison["candidate"] > candidate["AP"]            # soap, found twice in 20, is not averaged in
    assert comparison["difference"] == pytest.approx(shared.metric("AP") - comparison["production"])
    assert comparison["classes_candidate_alone"] == ["soap"] and comparison["classes_production_alone"] == []
    assert "the candidate alone knows soap" in comparison["reason"]
    assert comparison["per_class"]["synthetic"]["soap"] == {"candidate": candidate["per_class_AP"]["soap"],
                                                           "production": None}
    page = report.render(_strict_json((folder / "comparison.json").read_text()), {"promoted": False}, str(tmp_path))
    assert 'data-key="synthetic.AP.candidate" data-value="%r"' % comparison["candidate"] in page
    assert "the candidate alone knows soap" in page and 'data-flag="new"' in page

    entries = [{"run": "new", "kind": "candidate", "scores": {"synthetic": candidate}},
               {"run": "production (old)", "kind": "production", "scores": {
                   "synthetic": _per_class_scores(tmp_path / "board_old", {1: 10, 2: 10}, old, new=["soap"])}}]
    leaderboard._intervals(entries, "synthetic.AP", 50)
    assert entries[0]["value"] == pytest.approx(comparison["candidate"])
    assert entries[0]["vs_production"]["difference"] == pytest.approx(comparison["difference"])
