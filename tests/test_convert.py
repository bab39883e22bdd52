"""End to end: synthetic runs converted on Beam's DirectRunner, records read back with tf.data."""
import hashlib
import io
import json
import os
import shutil

import pytest
from PIL import Image

from tfproc import labels, sample, split
from conftest import convert, read_records, tfrecords_under

FAST = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
W, H = 64, 48


def expected_boxes(boxes, width=W, height=H):
    """Clip to the image and normalize, dropping boxes left with no area."""
    out = []
    for b in boxes:
        x0, y0 = max(b["x"], 0), max(b["y"], 0)
        x1, y1 = min(b["x"] + b["width"], width), min(b["y"] + b["height"], height)
        if x1 > x0 and y1 > y0:
            out.append((b["label_id"], x0 / width, y0 / height, x1 / width, y1 / height))
    return out


def record_boxes(record):
    return list(zip(record["image/object/class/label"], record["image/object/bbox/xmin"],
                    record["image/object/bbox/ymin"], record["image/object/bbox/xmax"],
                    record["image/object/bbox/ymax"]))


def assert_boxes_equal(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a[0] == e[0]
        assert a[1:] == pytest.approx(e[1:], abs=1e-6)


def add_captures(dataset_dir, name, captures):
    with open(os.path.join(dataset_dir, name), "w") as f:
        json.dump({"version": "0.0.1", "captures": captures}, f)


def camera_capture(cid, filename, values):
    return {"id": cid, "sensor": {"modality": "camera"}, "filename": filename,
            "annotations": [{"annotation_definition": sample.BOX_DEFINITION_ID, "values": values}]}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    """A run with good frames, frames without boxes, boxes across the edge, and bad items."""
    run = tmp_path_factory.mktemp("runs") / "urn:run_executions:T"
    expected = sample.make_run(str(run), app_params=3, instances=2, frames=5, width=W, height=H, seed=7)
    attempt = run / "urn:app_params:AP0" / "instance:0" / "attempt:1"
    dataset = next(attempt.glob("Dataset*"))
    rgb = next(attempt.glob("RGB*"))
    keys = sorted(k for k in expected if k.startswith("urn:app_params:AP0/instance:0/attempt:1/"))
    bad = {}
    # a missing image
    os.remove(run / keys[0])
    bad[keys[0]] = "missing image"
    # a file that is not an image
    (run / keys[1]).write_bytes(b"this is not a PNG")
    bad[keys[1]] = "not a PNG/JPEG image"
    # a JPEG frame and a capture with a malformed box, in an extra captures file
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (200, 10, 10)).save(buffer, "JPEG")
    (rgb / "photo.jpg").write_bytes(buffer.getvalue())
    jpeg_key = "urn:app_params:AP0/instance:0/attempt:1/%s/photo.jpg" % rgb.name
    jpeg_box = {"label_id": 2, "label_name": "milk", "x": 70.0, "y": -5.0, "width": 20.0, "height": 30.0}
    add_captures(dataset, "captures_050.json", [
        camera_capture("jpeg", "%s/photo.jpg" % rgb.name, [jpeg_box]),
        camera_capture("broken", "%s/rgb_2.png" % rgb.name,
                       [{"label_id": 1, "x": "left", "y": 0, "width": 1, "height": 1}]),
    ])
    expected[jpeg_key] = [jpeg_box]
    # a captures file that is not JSON
    (dataset / "captures_051.json").write_text('{"captures": [')
    for key in bad:
        del expected[key]
    return {"run": run, "expected": expected, "jpeg_key": jpeg_key, "bad": bad,
            "dataset": "urn:app_params:AP0/instance:0/attempt:1/%s" % dataset.name}


@pytest.fixture(scope="module")
def converted(bad_run):
    """The bad run converted once with the default local settings (multi-process DirectRunner)."""
    code = convert("--source", bad_run["run"], "--eval-pct", 30, "--shard-size-mb", 0.002)
    assert code == 0
    out = bad_run["run"] / "output"
    return {"out": out, "train": read_records(str(out / "train" / "*.tfrecord")),
            "eval": read_records(str(out / "eval" / "*.tfrecord")),
            "summary": json.loads((out / "summary.json").read_text())}


def test_every_valid_frame_written_once_with_its_boxes(bad_run, converted):
    records = converted["train"] + converted["eval"]
    keys = [r["image/filename"].decode() for r in records]
    assert sorted(keys) == sorted(bad_run["expected"])
    for record in records:
        key = record["image/filename"].decode()
        assert record["image/source_id"].decode() == split.source_id(key)
        width, height = (80, 60) if key == bad_run["jpeg_key"] else (W, H)
        assert (record["image/width"], record["image/height"]) == (width, height)
        assert_boxes_equal(record_boxes(record), expected_boxes(bad_run["expected"][key], width, height))
        pixel_areas = [(x1 - x0) * width * (y1 - y0) * height for _, x0, y0, x1, y1 in record_boxes(record)]
        assert record["image/object/area"] == pytest.approx(pixel_areas, rel=1e-5)
        names = [sample.LABELS[label - 1].encode() for label in record["image/object/class/label"]]
        assert record["image/object/class/text"] == names
        assert record["image/object/is_crowd"] == [0] * len(names)


def test_source_ids_are_decimal_numbers_unique_in_the_run(converted):
    ids = [r["image/source_id"].decode() for r in converted["train"] + converted["eval"]]
    assert all(i.isdigit() and int(i) < 2 ** split.SOURCE_ID_BITS for i in ids)
    assert len(set(ids)) == len(ids)
    assert split.source_id("a/b.png") == split.source_id("a/b.png") != split.source_id("a/c.png")


def test_a_source_id_collision_is_refused(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    sample.make_run(str(run), app_params=1, instances=1, frames=3, width=W, height=H)
    monkeypatch.setattr(split, "source_id", lambda key: "7")
    assert convert("--source", run, "--eval-pct", 0, "--output", tmp_path / "out") == 1
    assert "share one numeric image/source_id" in capsys.readouterr().err
    assert not (tmp_path / "out" / "summary.json").exists()


def test_image_bytes_are_stored_untouched(bad_run, converted):
    for record in converted["train"] + converted["eval"]:
        on_disk = (bad_run["run"] / record["image/filename"].decode()).read_bytes()
        assert record["image/encoded"] == on_disk
        assert record["image/key/sha256"].decode() == hashlib.sha256(on_disk).hexdigest()
        assert record["image/format"] == (b"jpeg" if on_disk[:2] == b"\xff\xd8" else b"png")


def test_summary_counts_are_exact(bad_run, converted):
    summary, expected = converted["summary"], bad_run["expected"]
    splits = summary["splits"]
    assert splits["train"]["images"] == len(converted["train"])
    assert splits["eval"]["images"] == len(converted["eval"])
    assert splits["train"]["images"] + splits["eval"]["images"] == len(expected)
    kept = {k: expected_boxes(v, *((80, 60) if k == bad_run["jpeg_key"] else (W, H))) for k, v in expected.items()}
    assert splits["train"]["boxes"] + splits["eval"]["boxes"] == sum(len(v) for v in kept.values())
    assert summary["frames_without_boxes"] == sum(1 for v in kept.values() if not v)
    all_boxes = [b for v in expected.values() for b in v]
    assert summary["boxes_dropped"] == len(all_boxes) - sum(len(v) for v in kept.values())
    assert summary["boxes_clipped"] == sum(
        1 for k, v in expected.items() for b in v
        if b["x"] < 0 or b["y"] < 0
        or b["x"] + b["width"] > (80 if k == bad_run["jpeg_key"] else W)
        or b["y"] + b["height"] > (60 if k == bad_run["jpeg_key"] else H)) - summary["boxes_dropped"]
    assert summary["boxes_clipped"] > 0 and summary["boxes_dropped"] > 0 and summary["frames_without_boxes"] > 0
    per_class = {c["id"]: c["boxes"] for c in summary["classes"]}
    for label in range(1, len(sample.LABELS) + 1):
        assert per_class[label] == sum(1 for v in kept.values() for b in v if b[0] == label)
    assert summary["num_classes"] == len(sample.LABELS) and summary["label_id_shift"] == 0
    assert summary["skipped"] == {"missing image": 1, "not a PNG/JPEG image": 1, "malformed box": 1,
                                  "invalid JSON": 1}
    named = {e["item"]: e["reason"] for e in summary["skipped_examples"]}
    dataset = bad_run["dataset"]
    assert named[dataset + "/captures_051.json"] == "invalid JSON"
    assert named[dataset + "/captures_050.json#broken"] == "malformed box"
    assert list(bad_run["bad"])[1] in named
    assert len(summary["superseded_attempts"]) == 6


def test_label_map_matches_the_records(converted):
    text = (converted["out"] / "label_map.pbtxt").read_text()
    assert 'item {\n  name: "cereal"\n  id: 1\n}\n' in text
    items = labels.parse_label_map(text)
    assert items == {i + 1: name for i, name in enumerate(sample.LABELS)}
    for record in converted["train"] + converted["eval"]:
        for label, text_name in zip(record["image/object/class/label"], record["image/object/class/text"]):
            assert 1 <= label <= converted["summary"]["num_classes"]
            assert items[label] == text_name.decode()


def test_shards_are_named_sized_and_complete(converted):
    out = converted["out"]
    for split_name in ("train", "eval"):
        files = sorted(os.listdir(out / split_name))
        count = converted["summary"]["splits"][split_name]["shards"]
        assert count > 1
        assert files == ["%s-%05d-of-%05d.tfrecord" % (split_name, i, count) for i in range(count)]
    assert not [p for p in os.listdir(out) if p.startswith(".staging")]


def test_same_split_and_same_bytes_on_another_runner(bad_run, converted, tmp_path):
    again = tmp_path / "again"
    assert convert("--source", bad_run["run"], "--eval-pct", 30, "--shard-size-mb", 0.002, "--output", again,
                   "--direct_running_mode=multi_processing", "--direct_num_workers=2") == 0
    first, second = converted["out"], again
    names = [os.path.relpath(p, first) for p in tfrecords_under(first)]
    assert names == [os.path.relpath(p, second) for p in tfrecords_under(second)]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes()
    eval_keys = [r["image/filename"] for r in converted["eval"]]
    assert 0 < len(eval_keys) < len(bad_run["expected"])


def test_split_does_not_depend_on_shard_sizes(bad_run, converted, tmp_path):
    other = tmp_path / "other"
    assert convert("--source", bad_run["run"], "--eval-pct", 30, "--output", other, *FAST) == 0
    assert (sorted(r["image/filename"] for r in read_records(str(other / "eval" / "*.tfrecord")))
            == sorted(r["image/filename"] for r in converted["eval"]))


def test_existing_output_is_refused_then_replaced_with_overwrite(bad_run, converted, tmp_path, capsys):
    out = tmp_path / "o"
    assert convert("--source", bad_run["run"], "--eval-pct", 30, "--output", out, *FAST) == 0
    before = {p: open(p, "rb").read() for p in tfrecords_under(out)}
    capsys.readouterr()
    assert convert("--source", bad_run["run"], "--eval-pct", 30, "--output", out, *FAST) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "--overwrite" in err[-1]
    assert {p: open(p, "rb").read() for p in tfrecords_under(out)} == before
    # a stale shard of an earlier, larger run must not survive an overwrite
    (out / "train" / "train-00007-of-00008.tfrecord").write_bytes(b"")
    assert convert("--source", bad_run["run"], "--eval-pct", 30, "--output", out, "--overwrite", *FAST) == 0
    assert {p: open(p, "rb").read() for p in tfrecords_under(out)} == before


def test_strict_fails_naming_the_first_bad_item_and_writes_nothing(bad_run, tmp_path, capsys):
    out = tmp_path / "strict"
    assert convert("--source", bad_run["run"], "--eval-pct", 30, "--output", out, "--strict", *FAST) == 1
    err = capsys.readouterr().err
    # a missing image is named by the capture that refers to it, with the image as the detail
    missing = list(bad_run["bad"])[0]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: --strict: 4 bad item(s); first: %s/captures_000.json#capture-0: missing image %s"
                           % (bad_run["dataset"], missing))
    assert "while running" not in last
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--eval-pct", "120"], "--eval-pct must be between 0 and 100"),
    (["--eval-pct", "20", "--source", "/nonexistent/run"], "does not exist or is empty"),
])
def test_bad_arguments_end_with_one_line(bad_run, tmp_path, capsys, args, message):
    if "--source" not in args:
        args = ["--source", str(bad_run["run"])] + args
    assert convert(*args, "--output", tmp_path / "x", *FAST) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "x").exists()


def test_source_without_a_dataset(tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("hello")
    assert convert("--source", tmp_path / "empty", "--eval-pct", "20", *FAST) == 2
    assert "no dataset under" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "output").exists()


def test_the_shared_legacy_fixture(fixtures_dir, tmp_path):
    source = tmp_path / "simrun"
    shutil.copytree(fixtures_dir / "simrun", source)
    assert convert("--source", source, "--eval-pct", 0, *FAST) == 0
    records = {r["image/filename"].decode(): r for r in read_records(str(source / "output" / "train" / "*.tfrecord"))}
    assert sorted(records) == ["captures/camera_000.png", "captures/camera_001.png"]
    assert record_boxes(records["captures/camera_000.png"]) == []
    # camera_001 is 240x240? read the size the header gives and check the boxes of definition "4"
    r = records["captures/camera_001.png"]
    width, height = r["image/width"], r["image/height"]
    with Image.open(source / "captures" / "camera_001.png") as image:
        assert image.size == (width, height)
    values = [{"label_id": 27, "x": 30.0, "y": 50.0, "width": 100.0, "height": 100.0},
              {"label_id": 34, "x": 120.0, "y": 231.0, "width": 50.0, "height": 20.0},
              {"label_id": 25, "x": 132.0, "y": 83.0, "width": 10.0, "height": 20.0}]
    assert_boxes_equal(record_boxes(r), expected_boxes(values, width, height))
    assert [t.decode() for t in r["image/object/class/text"]] == ["car", "bicycle", "person"]
    summary = json.loads((source / "output" / "summary.json").read_text())
    assert summary["num_classes"] == 34
    assert [(c["id"], c["name"]) for c in summary["classes"]] == [(25, "person"), (27, "car"), (34, "bicycle")]


def test_labels_starting_at_zero_are_shifted(tmp_path):
    run = tmp_path / "zero"
    expected = sample.make_run(str(run), app_params=1, instances=1, frames=4, width=W, height=H, seed=3)
    for path in run.rglob("*.json"):
        doc = json.loads(path.read_text())
        for definition in doc.get("annotation_definitions", []):
            for item in definition.get("spec", []):
                if "label_id" in item:
                    item["label_id"] -= 1
        for capture in doc.get("captures", []):
            for annotation in capture.get("annotations", []):
                for value in annotation.get("values") or []:
                    value["label_id"] -= 1
        path.write_text(json.dumps(doc))
    assert convert("--source", run, "--eval-pct", 0, *FAST) == 0
    summary = json.loads((run / "output" / "summary.json").read_text())
    assert summary["label_id_shift"] == 1 and summary["num_classes"] == len(sample.LABELS)
    for record in read_records(str(run / "output" / "train" / "*.tfrecord")):
        key = record["image/filename"].decode()
        assert_boxes_equal(record_boxes(record), expected_boxes(expected[key]))


def test_a_retried_shard_writes_one_file_with_the_same_bytes(tmp_path):
    """A worker retry of a bundle rewrites the same staged shard; no second copy, no temp left."""
    import time
    from tfproc import labels, pipeline
    from tfproc.annotations import Box
    from tfproc.frames import FrameRef

    image = tmp_path / "a.png"
    image.write_bytes(sample.noisy_png(16, 12, __import__("random").Random(1)))
    settings = pipeline.Settings(str(tmp_path), str(tmp_path / "out"), "t", 20.0, 1 << 20, False, time.time())
    (tmp_path / "out" / ".staging-t" / "train").mkdir(parents=True)
    refs = [FrameRef("a.png", str(image), image.stat().st_size, (Box(1, "x", 1, 1, 4, 4),), "c#0")]
    label_map = labels.build_label_map({1: {"x"}})
    writer = pipeline.WriteShard(settings)
    first = list(writer.process((("train", 0, 1), refs), label_map))
    data = (tmp_path / "out" / ".staging-t" / "train" / "train-00000-of-00001.tfrecord").read_bytes()
    second = list(writer.process((("train", 0, 1), refs), label_map))
    assert first == second
    assert os.listdir(tmp_path / "out" / ".staging-t" / "train") == ["train-00000-of-00001.tfrecord"]
    assert (tmp_path / "out" / ".staging-t" / "train" / "train-00000-of-00001.tfrecord").read_bytes() == data
    assert len(read_records(str(tmp_path / "out" / ".staging-t" / "train" / "*.tfrecord"))) == 1


def test_never_more_shards_than_frames(fixtures_dir, tmp_path):
    """A shard size far below one frame: one shard per frame at most, the set complete."""
    source = tmp_path / "simrun"
    shutil.copytree(fixtures_dir / "simrun", source)
    assert convert("--source", source, "--eval-pct", 0, "--shard-size-mb", 0.05, *FAST) == 0
    summary = json.loads((source / "output" / "summary.json").read_text())
    count = summary["splits"]["train"]["shards"]
    files = sorted(os.listdir(source / "output" / "train"))
    assert count == 2 and files == ["train-%05d-of-%05d.tfrecord" % (i, count) for i in range(count)]
    assert len(read_records(str(source / "output" / "train" / "*.tfrecord"))) == 2
