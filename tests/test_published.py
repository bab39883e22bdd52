"""UnityGroceries-Real as published: its split files and label names, converted and trained on split by split."""
import contextlib
import io
import json
import os
import subprocess
import sys

import pytest

from conftest import read_records
from tfproc import groceries_sample, realdata, sample

FAST = ["--direct_num_workers", "1"]


def loader(*args, cwd=None):
    """``python real_data_loader.py ARGS`` in this process, from ``cwd``."""
    here = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        return realdata.main([str(a) for a in args] + FAST)
    finally:
        os.chdir(here)


@pytest.fixture(scope="module")
def groceries(tmp_path_factory):
    """A generated dataset in the published layout, converted with no option but --source and --output."""
    base = tmp_path_factory.mktemp("groceries")
    made = groceries_sample.make_groceries(str(base / "v3"), photos=30, width=160, height=120, seed=4)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert loader("--source", "v3", "--output", "out", cwd=base) == 0
    (base / "printed").write_text(printed.getvalue())
    return base, made


def test_each_split_holds_exactly_the_photos_its_file_lists(groceries):
    base, made = groceries
    assert (base / "printed").read_text().startswith(
        "Converted 30 photos into 9 published splits (train 18, train_medium 9, train_small 1, val 6, test 6, "
        "test_high_contrast")
    summary = json.loads((base / "out" / "summary.json").read_text())
    assert set(summary["splits"]) == set(groceries_sample.SPLITS)
    assert summary["split_by"] == "published split files" and summary["eval_pct"] is None
    assert summary["images"] == len(made["annotations"]) and summary["skipped_total"] == 0
    names = {i + 1: n for i, n in enumerate(sample.LABELS)}
    for split, indices in made["splits"].items():
        records = read_records(str(base / "out" / split / "*.tfrecord"))
        assert summary["splits"][split]["images"] == len(indices) == len(records), split
        expected = {made["annotations"][i]["file_name"]: made["annotations"][i]["annotations"] for i in indices}
        found = {os.path.basename(r["image/filename"].decode()): r for r in records}
        assert set(found) == set(expected), split
        for name, record in found.items():
            boxes = expected[name]
            assert record["image/object/class/label"] == [b["label_id"] for b in boxes]
            assert [t.decode() for t in record["image/object/class/text"]] == [names[b["label_id"]] for b in boxes]
            assert [round(x * 160) for x in record["image/object/bbox/xmin"]] == [b["bbox"][0] for b in boxes]
            assert [round(y * 120) for y in record["image/object/bbox/ymax"]] == [b["bbox"][1] + b["bbox"][3]
                                                                                 for b in boxes]
    label_map = (base / "out" / "label_map.pbtxt").read_text()
    assert all('name: "%s"' % n in label_map for n in sample.LABELS)       # from annotation_definitions.json
    counted = sum(c["boxes"] for c in summary["classes"])                  # each photo once, not per subset
    assert counted == sum(len(a["annotations"]) for a in made["annotations"])


def test_inspect_checks_a_published_output_split_by_split(groceries, tmp_path, capsys):
    from tfproc import inspect as inspect_lib
    base, made = groceries
    capsys.readouterr()
    assert inspect_lib.main([str(base / "out")]) == 0
    printed = capsys.readouterr().out
    assert "records: train %d (1 shards), train_medium" % len(made["splits"]["train"]) in printed
    assert "test_low_contrast %d (1 shards)" % len(made["splits"]["test_low_contrast"]) in printed
    assert "images per resolution: 160x120: 30" in printed          # each photo once
    import shutil
    shutil.copytree(base / "out", tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    summary["splits"]["test_low_ratio"]["images"] += 1
    (tmp_path / "out" / "summary.json").write_text(json.dumps(summary))
    assert inspect_lib.main([str(tmp_path / "out")]) == 1
    assert "says %d test_low_ratio images, the records hold %d" % (len(made["splits"]["test_low_ratio"]) + 1,
                                                                   len(made["splits"]["test_low_ratio"])) \
        in capsys.readouterr().out


def _copy(made_root, to):
    import shutil
    shutil.copytree(made_root, to)
    return to


@pytest.mark.parametrize("edit, named", [
    (lambda tokens: ["x7"] + tokens, "'x7' is not a number"),
    (lambda tokens: tokens + ["999"], "index 999 is out of range: annotations.json lists 30 photos"),
    (lambda tokens: tokens + tokens[:1], "is listed twice"),
])
def test_a_bad_split_file_is_named_with_its_index_and_strict_makes_it_fatal(groceries, tmp_path, edit, named):
    base, made = groceries
    src = _copy(base / "v3", tmp_path / "v3")
    test_file = src / "groceries_real_test.txt"
    tokens = edit(test_file.read_text().split())
    test_file.write_text(" ".join(tokens) + "\n")
    position = 1 if tokens[0] == "x7" else len(tokens)
    assert loader("--source", "v3", "--output", "strict", "--strict", cwd=tmp_path) != 0
    assert not (tmp_path / "strict").exists()
    assert loader("--source", "v3", "--output", "out", cwd=tmp_path) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["skipped_total"] == 1
    (example,) = summary["skipped_examples"]
    assert example["item"].endswith("groceries_real_test.txt#%d" % position), example
    assert named in example["detail"], example
    assert summary["splits"]["test"]["images"] == len(made["splits"]["test"])      # the good ones are all kept


def test_a_photo_in_train_and_test_is_left_out_of_train_and_named(groceries, tmp_path):
    base, made = groceries
    src = _copy(base / "v3", tmp_path / "v3")
    leaked = made["splits"]["test"][0]
    (src / "groceries_real_train.txt").write_text(" ".join(str(i) for i in made["splits"]["train"] + [leaked]))
    assert loader("--source", "v3", "--output", "out", cwd=tmp_path) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (example,) = summary["skipped_examples"]
    assert example["reason"] == "photo in a train and a test split"
    assert "index %d" % leaked in example["item"] and "groceries_real_test.txt" in example["detail"]
    train = {os.path.basename(r["image/filename"].decode()) for r in read_records(str(tmp_path / "out" / "train"
                                                                                      / "*.tfrecord"))}
    assert made["annotations"][leaked]["file_name"] not in train
    assert summary["splits"]["test"]["images"] == len(made["splits"]["test"])
    assert loader("--source", "v3", "--output", "strict", "--strict", cwd=tmp_path) != 0


def test_the_label_map_is_checked_and_eval_pct_is_refused(groceries, tmp_path, capsys):
    base, _ = groceries
    wrong = tmp_path / "wrong.pbtxt"
    names = list(sample.LABELS)
    names[2] = "soap"
    wrong.write_text("".join("item {\n  id: %d\n  name: '%s'\n}\n" % (i + 1, n) for i, n in enumerate(names)))
    capsys.readouterr()
    assert loader("--source", base / "v3", "--label-map", wrong, "--output", tmp_path / "a") == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("Listing ")]
    assert len(err) == 1 and "label id 3 is '%s' in annotation_definitions.json and 'soap'" % sample.LABELS[2] \
        in err[0], err
    assert loader("--source", base / "v3", "--eval-pct", 20, "--output", tmp_path / "b") == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("Listing ")]
    assert len(err) == 1 and "--eval-pct" in err[0] and "published split files" in err[0], err
    right = tmp_path / "right.pbtxt"
    right.write_text((base / "out" / "label_map.pbtxt").read_text())
    assert loader("--source", base / "v3", "--label-map", right, "--output", tmp_path / "c") == 0
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# a model trained a few steps scores below the detection generator's 0.05: keep every box
EVERY_DETECTION = "{task: {model: {detection_generator: {pre_nms_score_threshold: 0.0}}}}"
SMALL = ["--model-size", "small", "--backbone", "mobilenet", "--fpn-type", "fpn", "--image-size", "128,128", "--train-batch-size", "2"]


def trainer(*args, cwd=None):
    done = subprocess.run([sys.executable, "-m", "trainer"] + [str(a) for a in args], cwd=cwd, capture_output=True,
                          text=True, timeout=900)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def published_model(groceries, tmp_path_factory):
    """A model trained 2 steps on the published train_small: its folder (where ``data`` links to the
    conversion) and what the trainer printed."""
    base, _ = groceries
    folder = tmp_path_factory.mktemp("published_model")
    os.symlink(base / "out", folder / "data")
    code, out, err = trainer("train", "--dataset", "data", "--model-dir", "m", "--train-split", "train_small",
                             "--max-steps", 2, "--train-steps-per-eval", 2, *SMALL, "--params-override",
                             EVERY_DETECTION, cwd=folder)
    assert code == 0, err
    return folder, err


def test_the_trainer_trains_on_a_published_split_and_scores_any_other(groceries, published_model):
    base, made = groceries
    tmp_path, err = published_model
    assert "data has no eval split: evaluating on val" in err.splitlines()[0], err
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["images"] == len(made["splits"]["val"]) and metrics["split"] == "val"
    code, out, err = trainer("evaluate", "--dataset", "data", "--model-dir", "m", "--split", "test_low_contrast",
                             "--output", "low", cwd=tmp_path)
    assert code == 0, err
    scored = json.loads((tmp_path / "low" / "metrics.json").read_text())
    assert scored["images"] == len(made["splits"]["test_low_contrast"]) and scored["split"] == "test_low_contrast"

    # the subsets' scores from test's matches are pycocotools' own on the subset
    code, out, err = trainer("evaluate", "--dataset", "data", "--model-dir", "m", "--split", "test",
                             "--output", "test", cwd=tmp_path)
    assert code == 0, err
    from launcher.decide import subset_scores
    whole = dict(json.loads((tmp_path / "test" / "metrics.json").read_text()), matches=str(tmp_path / "test" /
                                                                                          "matches.json"))
    direct = json.loads((tmp_path / "low" / "metrics.json").read_text())
    derived = subset_scores.derive(whole, str(base / "out"), "test_low_contrast", str(tmp_path / "derived"))
    assert derived["images"] == direct["images"] == len(made["splits"]["test_low_contrast"])
    for key in ("AP", "AP50", "AP75", "ARmax1", "ARmax10", "ARmax100"):
        assert derived[key] == pytest.approx(direct[key], abs=1e-9), key
    for name, value in direct["per_class_AP"].items():
        assert derived["per_class_AP"][name] == pytest.approx(value, abs=1e-9), name
    assert subset_scores.derive(whole, str(base / "out"), "val", str(tmp_path / "not")) is None   # not a part
    code, out, err = trainer("evaluate", "--dataset", "data", "--model-dir", "m", "--split", "test_dark",
                             cwd=tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--split test_dark" in err and "test_low_contrast (%d images)" % len(made["splits"]["test_low_contrast"]) \
        in err


def test_evaluate_scores_the_boxes_predict_and_the_saved_model_give(groceries, published_model):
    """The photos (160x120) are letterboxed into the 128x128 input: a box the model puts in the
    padding is clipped to the photo by predict and the SavedModel, and so by evaluate. Every box
    evaluate scored is one predict gives, and none leaves the photo. (On train: this model, 2 steps
    in, finds the first class only, and every split but train may lack it.)"""
    base, made = groceries
    folder, _ = published_model
    code, out, err = trainer("evaluate", "--dataset", "data", "--model-dir", "m", "--split", "train", "--output",
                             "scored_train", cwd=folder)
    assert code == 0, err
    code, out, err = trainer("predict", "--dataset", "data", "--model-dir", "m", "--split", "train", "--min-score", 0,
                             "--max-images", 100, "--output", "predicted_train", cwd=folder)
    assert code == 0, err
    predicted = {}
    for d in json.loads((folder / "predicted_train" / "detections.json").read_text()):
        predicted.setdefault((d["image_id"], d["category_id"]), []).append(d["bbox"])
    matches = json.loads((folder / "scored_train" / "matches.json").read_text())
    width, height = 160, 120
    compared = 0
    for row in matches["rows"]:
        for x, y, w, h in row["boxes"]:
            assert x >= 0 and y >= 0 and x + w <= width + 0.1 and y + h <= height + 0.1, (row["image"], x, y, w, h)
            assert any(all(abs(a - b) <= 0.1 for a, b in zip((x, y, w, h), box))
                       for box in predicted.get((row["image"], row["class"]), [])), (row["image"], (x, y, w, h))
            compared += 1
    assert compared > 20
    assert any(y + h > height - 1 for row in matches["rows"] for x, y, w, h in row["boxes"])     # some are clipped


def _photos(folder, root, made, images, names, relabel):
    """The groceries photos ``images``, each box as ``relabel(key, box)`` gives it (None: left out),
    converted into FOLDER/out (every photo in eval) with the label map ``names``."""
    from tfproc import labels
    (folder / "photos" / "images").mkdir(parents=True)
    items = []
    for index in images:
        item = made["annotations"][index]
        os.link(root / "images" / item["file_name"], folder / "photos" / "images" / item["file_name"])
        boxes = [relabel(index * 10 + k, box) for k, box in enumerate(item["annotations"])]
        items.append({"file_name": item["file_name"], "annotations": [box for box in boxes if box]})
    (folder / "photos" / "annotations.json").write_text(json.dumps(items))
    (folder / "label_map.pbtxt").write_text(labels.format_label_map(names))
    assert loader("--source", folder / "photos", "--label-map", folder / "label_map.pbtxt", "--eval-pct", 100,
                  "--output", folder / "out") == 0
    return folder / "out"


def test_a_model_scores_data_with_a_class_new_to_it_on_the_classes_it_knows(groceries, published_model, tmp_path):
    """Seed 004's data after a new product: every third box is soap, a class the model never saw.
    Scored on the classes it knows, the numbers are pycocotools' own on the same photos without the
    soap boxes; a class id that names another class is refused."""
    from tfproc import labels
    base, made = groceries
    folder, _ = published_model
    known = labels.parse_label_map((base / "out" / "label_map.pbtxt").read_text())
    assert labels.parse_label_map((folder / "m" / "label_map.pbtxt").read_text()) == known     # kept with the model
    soap = max(known) + 1
    images = made["splits"]["test"]
    with_soap = _photos(tmp_path / "with", base / "v3", made, images, {**known, soap: "soap"},
                        lambda key, box: dict(box, label_id=soap) if key % 3 == 0 else box)
    without = _photos(tmp_path / "without", base / "v3", made, images, known,
                      lambda key, box: None if key % 3 == 0 else box)
    assert {c["name"]: c["boxes"] for c in json.loads((with_soap / "summary.json").read_text())["classes"]}["soap"]
    scored = {}
    for name, data in (("without", without), ("with", with_soap)):
        code, out, err = trainer("evaluate", "--dataset", data, "--model-dir", folder / "m", "--output",
                                 tmp_path / ("scored_" + name), cwd=tmp_path)
        assert code == 0, err
        scored[name] = (json.loads((tmp_path / ("scored_" + name) / "metrics.json").read_text()),
                        json.loads((tmp_path / ("scored_" + name) / "matches.json").read_text()), err)
    metrics, matches, err = scored["with"]
    assert "1 class(es) the model was not trained on (soap): scored on the other %d" % len(known) in err
    assert metrics["classes_new_to_model"] == ["soap"] and "soap" not in metrics["per_class_AP"]
    assert matches["classes"] == scored["without"][1]["classes"] and soap not in matches["classes"]
    assert matches["rows"] == scored["without"][1]["rows"]
    reference = scored["without"][0]
    from trainer import engine
    for key in engine.COCO_KEYS:           # the losses differ: the soap boxes are in the data
        assert metrics[key] == pytest.approx(reference[key], abs=1e-12), key
    assert metrics["per_class_AP"] == pytest.approx(reference["per_class_AP"], abs=1e-12)

    renamed = _photos(tmp_path / "renamed", base / "v3", made, images[:2], {**known, 1: "not-" + known[1]},
                      lambda key, box: box)
    code, out, err = trainer("evaluate", "--dataset", renamed, "--model-dir", folder / "m", cwd=tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "class 1 is %s in the model but not-%s in the data" % (known[1], known[1]) in err


def test_a_vertex_job_trains_on_the_split_asked_and_evaluates_on_val(groceries, monkeypatch, tmp_path):
    """The launcher's dry run on a published output: the job's trainer gets the splits, checked first."""
    from test_launcher import run
    base, made = groceries
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    common = ("train", "--image", "us-docker.pkg.dev/p/r/synthdet:1", "--dataset", base / "out", "--job-dir",
              "gs://b/model", "--job-id", "tuned", "--dry-run")
    code, out, err = run(*common, "--train-split", "train_small")
    assert code == 0, err
    body = json.loads(out[out.index("{"):out.index("\nThe same with gcloud")])
    args = body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
    assert args[args.index("--train-split") + 1] == "train_small" and "--eval-split" not in args
    assert args[args.index("--num-eval-images") + 1] == str(len(made["splits"]["val"]))    # val's, all of them
    code, out, err = run(*common, "--train-split", "train_huge")
    assert code == 2 and "--train-split train_huge" in err and "train_small" in err, err
    code, out, err = run(*common, "--eval-split", "test", "--num-eval-images", len(made["splits"]["test"]) + 1)
    assert code == 2 and "more than the %d validation images" % len(made["splits"]["test"]) in err, err
    code, out, err = run(*common[:-1], "--backend", "ml", "--dry-run", "--train-split", "train_small")
    assert code == 2 and "--train-split is for --backend vertex" in err, err
