"""inspect: statistics, checks that can fail, and previews."""
import json
import os

import pytest
from PIL import Image

from tfproc import inspect, records, sample
from conftest import convert
from test_convert import FAST


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    run = tmp_path_factory.mktemp("inspect") / "run"
    sample.make_run(str(run), app_params=2, instances=1, frames=5, width=64, height=48, seed=5)
    assert convert("--source", run, "--eval-pct", 30, *FAST) == 0
    return run / "output"


def test_a_good_output_passes_and_counts_match_the_summary(output, capsys, tmp_path):
    assert inspect.main([str(output), "--preview", "3", "--preview-dir", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    summary = json.loads((output / "summary.json").read_text())
    train, evaluation = summary["splits"]["train"], summary["splits"]["eval"]
    assert "records: train %d (%d shards), eval %d (%d shards)" % (
        train["images"], train["shards"], evaluation["images"], evaluation["shards"]) in out
    for entry in summary["classes"]:
        assert "%4d %-30s %8d" % (entry["id"], entry["name"], entry["boxes"]) in out
    assert "images per resolution: 64x48: %d" % (train["images"] + evaluation["images"]) in out
    assert "checks: all" in out
    pngs = sorted(os.listdir(tmp_path / "p"))
    assert len(pngs) == 4 and "contact_sheet.png" in pngs
    assert Image.open(tmp_path / "p" / pngs[0]).size == (64, 48)


def test_a_corrupt_shard_fails_the_checks(output, tmp_path, capsys):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(output, broken)
    shard = sorted((broken / "train").glob("*.tfrecord"))[0]
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert inspect.main([str(broken)]) == 1
    out = capsys.readouterr().out
    assert "CRC mismatch" in out and "problem(s)" in out


def test_a_label_outside_the_label_map_fails_the_checks(output, tmp_path, capsys):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(output, bad)
    image = sample.noisy_png(8, 8, __import__("random").Random(0))
    import hashlib
    example = records.encode_example({
        "image/encoded": records.bytes_feature([image]), "image/format": records.bytes_feature([b"png"]),
        "image/width": records.int64_feature([8]), "image/height": records.int64_feature([8]),
        "image/filename": records.bytes_feature([b"x.png"]), "image/source_id": records.bytes_feature([b"x.png"]),
        "image/key/sha256": records.bytes_feature([hashlib.sha256(image).hexdigest()]),
        "image/object/bbox/xmin": records.float_feature([0.5]), "image/object/bbox/xmax": records.float_feature([0.25]),
        "image/object/bbox/ymin": records.float_feature([0.1]), "image/object/bbox/ymax": records.float_feature([0.2]),
        "image/object/class/label": records.int64_feature([99]),
        "image/object/class/text": records.bytes_feature([b"ghost"]),
    })
    with open(sorted((bad / "eval").glob("*.tfrecord"))[0], "ab") as f:
        f.write(b"".join(records.frame_record(example)))
    assert inspect.main([str(bad)]) == 1
    out = capsys.readouterr().out
    assert "class 99 is not in the label map" in out
    assert "box 0 not within [0, 1] and ordered" in out
    assert "summary.json: says" in out   # one more eval record than the summary counted
    assert "image/source_id 'x.png' is not a decimal number" in out
