"""All candidates side by side (seed 004's post-processing): the best checkpoint of every complete
run under WORK_DIR/runs/, and the production model, scored on the same data, ranked with intervals.

    board = leaderboard.build("W", "W/production", dataset="", real_dataset="", since="8w")
    # W/leaderboards/<date>/leaderboard.json and report.html; scores kept under W/leaderboards/scores/

A run is complete when its promote step wrote promotion.json. Scores are kept per checkpoint and
data (W/leaderboards/scores/<hash>/), so a model already scored on the same data is not scored
again. Intervals come from one set of resamples of the images shared by every model, so the
entries' intervals and their differences from production are paired.
"""
import datetime
import hashlib
import html
import json
import os
import time

import numpy as np

from launcher.decide import production as production_lib
from launcher.decide import report as report_lib
from launcher.decide import subset_scores
from launcher.decide.compare import RESAMPLES
from launcher.decide.scores import SUBSET, check_split, split_with_images, subsets
from launcher.errors import StepFailed
from tfproc import console, fsutil
from trainer import cocoap

FOLDER = "leaderboards"


def since_seconds(text):
    """``8w``, ``30d``, ``12h`` -> seconds; "" -> None (every run)."""
    if not text:
        return None
    units = {"w": 7 * 86400, "d": 86400, "h": 3600}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit() or int(text[:-1]) <= 0:
        raise ValueError("--since takes a number and w, d or h (e.g. 8w, 30d), got %r" % text)
    return int(text[:-1]) * units[text[-1]]


def complete_runs(work_dir, since=None, now=None, skipped=None):
    """``[(run name, candidate dir, promotion)]`` of the runs whose promote step ended, newest first;
    a run whose promotion.json cannot be read is added to ``skipped`` as ``(run, why)``."""
    runs = fsutil.join(work_dir, "runs")
    if fsutil.is_remote(runs):
        names = sorted({path.split("/")[0] for path, _ in fsutil.iter_tree(runs, sizes=False)
                        if path.count("/") == 1 and path.endswith("/promotion.json")})
    else:
        names = sorted(os.listdir(runs)) if os.path.isdir(runs) else []
    found = []
    for name in names:
        path = fsutil.join(fsutil.join(runs, name), "promotion.json")
        try:
            promotion = fsutil.read_json_or_none(path)
        except (OSError, ValueError) as error:
            (skipped if skipped is not None else []).append((name, "its promotion.json cannot be read (%s)"
                                                            % _first_line(error)))
            continue
        if not isinstance(promotion, dict) or not promotion.get("candidate_dir"):
            continue
        written = float(promotion.get("time") or 0) or _modified(path)
        if since is not None and written < (now or time.time()) - since:
            continue
        found.append((written, name, promotion["candidate_dir"], promotion))
    return [(name, candidate, promotion) for _, name, candidate, promotion in sorted(found, reverse=True)]


def _modified(path):
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def scored_before(folders, dataset, split, digest):
    """The metrics (with their matches) of the first of ``folders`` that scored the weights named
    ``digest`` on that split of ``dataset``, or None."""
    for folder in folders:
        metrics = fsutil.read_json_or_none(fsutil.join(folder, "metrics.json"))
        if metrics and metrics.get("dataset") == dataset and metrics.get("split") == split and \
                metrics.get("checkpoint_digest") == digest and fsutil.is_file(fsutil.join(folder, cocoap.MATCHES)):
            return dict(metrics, matches=fsutil.join(folder, cocoap.MATCHES))
    return None


def score(model_dir, dataset, scores_root, name, split="", within=None):
    """COCO scores and matches of ``model_dir``'s best checkpoint (else its newest) on ``dataset``'s
    ``split`` (default: eval, else test). Reused when the same weights (``engine.checkpoint_digest``:
    a folder trained again to the same step holds other weights) were scored on that split of that
    data before: under SCORES_ROOT, or by the run's own evaluate step. A subset of the split scored
    in ``within`` is taken from its matches (``subset_scores``)."""
    from trainer import commands, engine
    checkpoint = engine.choose_checkpoint(model_dir, "best") or engine.choose_checkpoint(model_dir, "latest")
    if not checkpoint:
        raise StepFailed("%s holds no checkpoint" % model_dir)
    split = split or split_with_images(dataset)
    step, digest = engine.step_of(checkpoint), engine.checkpoint_digest(checkpoint)
    key = hashlib.sha1(("%s\n%s\n%s" % (digest, dataset, split)).encode()).hexdigest()[:16]
    out = fsutil.join(scores_root, key)
    before = scored_before((out, fsutil.join(model_dir, "eval_synthetic"), fsutil.join(model_dir, "eval_real"),
                            fsutil.join(model_dir, "eval_real_" + split)), dataset, split, digest)
    what = dataset if split in ("eval", "test") else "%s (%s)" % (dataset, split)
    if before:
        if within is None:      # a subset's line would repeat its split's
            console.say("  %s on %s: scored before (%s)" % (name, what, os.path.dirname(before["matches"])))
        return before
    if within is not None and within.get("checkpoint_digest") == digest:
        derived = subset_scores.derive(within, dataset, split, out)
        if derived is not None:
            return derived
    console.say("  %s on %s: scoring the checkpoint of step %d" % (name, what, step))
    try:
        metrics = commands.evaluate(dataset, model_dir, split, output=out, checkpoint=str(step))
    except commands.TrainerError as error:
        raise StepFailed("scoring %s on %s failed: %s" % (model_dir, dataset, error))
    metrics.pop("path", None)
    return dict(metrics, matches=fsutil.join(out, cocoap.MATCHES))


def build(work_dir, production_dir, dataset="", real_dataset="", since="", metric="", resamples=RESAMPLES,
          today=None, real_split="", models=()):
    """Score every complete candidate, each of ``models`` (``(name, model dir)`` trained by hand) and
    the production model on the same data (the real data's ``real_split``, default eval, else
    test, and each ``test_*`` subset it holds); write W/leaderboards/<date>/leaderboard.json and
    report.html. Returns the leaderboard."""
    skipped = []
    runs = complete_runs(work_dir, since_seconds(since), skipped=skipped)
    if not runs and not models:
        raise StepFailed("no complete run under %s%s" % (fsutil.join(work_dir, "runs"), " since %s ago" % since if since
                                                          else ""))
    if runs:
        newest = fsutil.join(fsutil.join(work_dir, "runs"), runs[0][0])
        dataset = dataset or fsutil.join(newest, "output")
        if not real_dataset:
            compared = fsutil.read_json_or_none(fsutil.join(newest, "comparison.json")) or {}
            real_dataset = ((compared.get("candidate_metrics") or {}).get("real") or {}).get("dataset", "")
    elif not (dataset or real_dataset):
        raise StepFailed("--model: pass the data to score them on, --real-dataset and or --dataset")
    metric = metric or ("real.AP" if real_dataset else "synthetic.AP")
    where, _, key = metric.partition(".")
    if key not in cocoap.SUPPORTED or where not in ("synthetic", "real") or (where == "real" and not real_dataset) \
            or (where == "synthetic" and not dataset):
        raise StepFailed("--metric %s: pass synthetic.KEY (with --dataset where no run gives one), or real.KEY "
                         "with --real-dataset (KEY one of %s)" % (metric, ", ".join(cocoap.SUPPORTED)))
    if real_split and not real_dataset:
        raise StepFailed("--real-split %s needs --real-dataset (the newest run was compared on no real data)"
                         % real_split)
    real_split = check_split(real_dataset, real_split, "--real-split") if real_split else (
        split_with_images(real_dataset) if real_dataset else "")
    real_subsets = subsets(real_dataset, real_split) if real_dataset else []
    scores_root = fsutil.join(fsutil.join(work_dir, FOLDER), "scores")
    models = [(name, candidate, "candidate") for name, candidate, _ in runs] + [
        (name, model_dir, "model") for name, model_dir in models]
    try:
        current = production_lib.current_model(production_dir)
        if current:
            pointer = (production_lib.read_pointer(production_dir) or {}).get("current") or {}
            models.append(("production (%s)" % pointer.get("name", "?"), current, "production"))
    except production_lib.PromotionError as error:
        skipped.append(("production", _first_line(error)))
    entries = []
    console.say("scoring %d models on %s" % (len(models), " and ".join(d for d in (dataset, real_dataset) if d)))
    for name, model_dir, kind in models:
        try:
            scored = {"synthetic": score(model_dir, dataset, scores_root, name)} if dataset else {}
            if real_dataset:
                scored["real"] = score(model_dir, real_dataset, scores_root, name, real_split)
            for subset in real_subsets:
                scored[SUBSET + subset] = score(model_dir, real_dataset, scores_root, name, subset, scored["real"])
            if real_subsets:
                console.say("  %s on %s: its subsets %s scored too" % (name, real_dataset, ", ".join(real_subsets)))
        except Exception as error:      # one damaged model (a cut checkpoint, a deleted folder) is named, not fatal
            skipped.append((name, "%s could not be scored (%s)" % (model_dir, _first_line(error))))
            console.say("  %s: skipped, %s could not be scored" % (name, model_dir))
            continue
        entries.append({"run": name, "model": model_dir, "kind": kind, "scores": scored})
    if not entries:
        raise StepFailed("no model could be scored: %s" % "; ".join("%s: %s" % item for item in skipped))
    used = _intervals(entries, metric, resamples)
    subset_resamples = {subset: _subset_intervals(entries, SUBSET + subset, key, resamples) for subset in real_subsets}
    entries.sort(key=lambda e: -e["value"])
    for rank, entry in enumerate(entries, 1):
        entry["rank"] = rank
    board = {"metric": metric, "dataset": dataset or None, "real_dataset": real_dataset or None,
             "real_split": real_split or None, "subsets": real_subsets, "subset_resamples": subset_resamples,
             "resamples": used,
             "resamples_left_out": resamples - used,
             "classes_left_out": sorted({c for e in entries for scores in e["scores"].values()
                                         for c in scores.get("classes_new_to_model") or ()}),
             "skipped": [{"run": run, "why": why} for run, why in skipped],
             "images": entries[0]["images"], "since": since or None, "production_dir": production_dir,
             "entries": [{k: e[k] for k in ("rank", "run", "model", "kind", "value", "ci95", "vs_production",
                                             "per_class", "subsets")} for e in entries]}
    day = today or datetime.date.today().isoformat()
    folder = fsutil.join(fsutil.join(work_dir, FOLDER), day)
    fsutil.write_json(fsutil.join(folder, "leaderboard.json"), board)
    fsutil.write_atomically(fsutil.join(folder, report_lib.NAME), render(board).encode("utf-8"))
    board["folder"] = folder
    return board


def _resampled(entries, where, key, resamples, seed=0):
    """The tables of ``entries``' scores on ``where``, their images, and ``key`` of each table: on
    all the images, on one set of resamples shared by all and, from few images, with each image left
    out in turn; the last two less those that hold no ground truth (pycocotools' -1)."""
    tables = cocoap.on_common_classes([json.loads(fsutil.read_bytes(e["scores"][where]["matches"])) for e in entries])
    images = sorted(tables[0].images)
    for table, entry in zip(tables, entries):
        if sorted(table.images) != images:
            raise StepFailed("%s was scored on other images than %s" % (entry["run"], entries[0]["run"]))

    def scored(weights):
        values = np.array([[t.metric(key, t.weights(w, images)) for w in weights] for t in tables])
        return values[:, (values >= 0).all(axis=0)] if values.size else values.reshape(len(tables), 0)

    left_out = scored(cocoap.left_out(len(images))) if len(images) < cocoap.JACKKNIFE_BELOW else None
    return ([t.metric(key) for t in tables], images, scored(cocoap.draws(len(images), resamples, seed)),
            left_out)


def _value_and_difference(full, values, left_out, i, production, images):
    """Entry ``i``'s 95% interval, and its paired difference from the production entry (None for
    production itself or without one)."""
    own = cocoap.interval(full[i], values[i], images, None if left_out is None else left_out[i])
    if production is None or i == production:
        return own, None
    difference = full[i] - full[production]
    ci95 = cocoap.interval(difference, values[i] - values[production], images,
                           None if left_out is None else left_out[i] - left_out[production], (-1, 1))
    return own, {"difference": difference, "ci95": ci95, "verdict": cocoap.verdict(ci95)}


def _production_index(entries):
    return next((i for i, e in enumerate(entries) if e["kind"] == "production"), None)


def _subset_intervals(entries, where, key, resamples):
    """Each entry's ``key`` on a subset, its interval and its paired difference from production;
    returns the resamples used."""
    full, images, values, left_out = _resampled(entries, where, key, resamples)
    production = _production_index(entries)
    for i, entry in enumerate(entries):
        ci95, vs = _value_and_difference(full, values, left_out, i, production, len(images))
        entry.setdefault("subsets", {})[where[len(SUBSET):]] = {
            "value": full[i], "images": len(images), "vs_production": vs, "ci95": ci95}
    return int(values.shape[1])


def _intervals(entries, metric, resamples, seed=0):
    """Each entry's value, its 95% interval and its paired difference from production, over one
    set of resamples shared by all."""
    where, _, key = metric.partition(".")
    full, images, values, left_out = _resampled(entries, where, key, resamples, seed)
    production = _production_index(entries)
    for i, entry in enumerate(entries):
        entry.setdefault("subsets", {})
        entry["value"] = full[i]
        entry["ci95"], entry["vs_production"] = _value_and_difference(full, values, left_out, i, production,
                                                                      len(images))
        entry["images"] = len(images)
        entry["per_class"] = {split: (entry["scores"][split].get("per_class_AP") or {}) for split in entry["scores"]
                              if not split.startswith(SUBSET)}
    return int(values.shape[1])


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _skipped(board):
    skipped = board.get("skipped") or []
    return "<p id=\"skipped\">Left out, damaged: %s.</p>" % "; ".join(
        "%s (%s)" % (html.escape(s["run"]), html.escape(s["why"])) for s in skipped) if skipped else ""


def _left_out(board):
    left_out = board.get("resamples_left_out") or 0
    classes = board.get("classes_left_out") or []
    return (("; %d resamples held no ground-truth box and were left out" % left_out) if left_out else "") + (
        ("; ranked on the classes every model knows, without %s" % html.escape(", ".join(classes))) if classes else "")


def _subset_note(board):
    subsets = board.get("subsets") or []
    if not subsets:
        return ""
    return html.escape(" Ranked on the %s split; beside it, the same %s on each subset (%s)." % (
        board.get("real_split"), board["metric"].partition(".")[2], ", ".join(subsets)))


def render(board):
    e = html.escape
    rows = []
    subsets = board.get("subsets") or []
    for entry in board["entries"]:
        vs = entry["vs_production"] or {}
        shown = "".join(report_lib._cell("%s.%s.value" % (entry["run"], s), entry["subsets"][s]["value"]) +
                        report_lib._interval_cell("%s.%s.ci95" % (entry["run"], s), entry["subsets"][s]["ci95"])
                        for s in subsets)
        rows.append("<tr><td>%d</td><td>%s</td><td>%s</td>%s%s%s%s<td>%s</td>%s</tr>" % (
            entry["rank"], e(entry["run"]), e(entry["kind"]),
            report_lib._cell("%s.value" % entry["run"], entry["value"]),
            report_lib._interval_cell("%s.ci95" % entry["run"], entry["ci95"]),
            report_lib._cell("%s.difference" % entry["run"], vs.get("difference"), signed=True),
            report_lib._interval_cell("%s.vs_production" % entry["run"], vs.get("ci95")),
            e(vs.get("verdict") or ""), shown))
    classes = sorted({c for entry in board["entries"] for c in entry["per_class"].get(board["metric"].split(".")[0],
                                                                                       {})})
    split = board["metric"].split(".")[0]
    class_rows = ["<tr><td>%s</td>%s</tr>" % (e(entry["run"]), "".join(
        report_lib._cell("%s.class.%s" % (entry["run"], c), entry["per_class"].get(split, {}).get(c))
        for c in classes)) for entry in board["entries"]]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>leaderboard</title><style>%s"
            "</style></head><body><h1>Leaderboard by %s</h1><p>%d images of %s; intervals from %d resamples of "
            "the images, the same resamples for every model%s.%s</p><table id=\"leaderboard\"><tr><th>rank</th>"
            "<th>run</th><th>kind</th><th>%s</th><th>95%% interval</th><th>against production</th>"
            "<th>95%% interval</th><th>verdict</th>%s</tr>%s</table>%s<h2>AP per class (%s data)</h2><table><tr><th>run"
            "</th>%s</tr>%s</table></body></html>\n" % (
                report_lib.STYLE, e(board["metric"]), board["images"],
                e(board["real_dataset"] if split == "real" else board["dataset"]), board["resamples"],
                _left_out(board), _subset_note(board),
                e(board["metric"]), "".join("<th>%s</th><th>95%% interval</th>" % e(s) for s in subsets),
                "".join(rows), _skipped(board), e(split),
                "".join("<th>%s</th>" % e(c) for c in classes),
                "".join(class_rows)))
