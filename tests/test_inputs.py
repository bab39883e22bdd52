"""Other inputs through the same pipeline: SOLO datasets, real photos (annotations.json, COCO)."""
import json

from tfproc import labels, sample
from conftest import convert, read_records
from test_convert import FAST, assert_boxes_equal, expected_boxes, record_boxes


def test_solo_datasets_convert_one_record_per_camera_image(tmp_path):
    expected = {}
    for name, seed in (("solo_a", 1), ("solo_b", 2)):
        made = sample.make_solo(str(tmp_path / "src" / name), sequences=2, steps=2, cameras=2,
                                width=64, height=48, seed=seed)
        expected.update({"%s/%s" % (name, key): boxes for key, boxes in made.items()})
    assert convert("--source", tmp_path / "src", "--eval-pct", 25, *FAST) == 0
    out = tmp_path / "src" / "output"
    records = read_records(str(out / "train" / "*.tfrecord")) + read_records(str(out / "eval" / "*.tfrecord"))
    assert sorted(r["image/filename"].decode() for r in records) == sorted(expected)
    assert len(records) == 2 * 2 * 2 * 2
    for record in records:
        assert_boxes_equal(record_boxes(record), expected_boxes(expected[record["image/filename"].decode()]))
        for label in record["image/object/class/label"]:
            assert 1 <= label <= len(sample.LABELS)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_classes"] == len(sample.LABELS)
    assert summary["boxes_dropped"] + sum(len(expected_boxes(b)) for b in expected.values()) == \
        sum(len(b) for b in expected.values())


# -- real photos ------------------------------------------------------------------------------

import io
import shutil

from PIL import Image

from tfproc import realdata

LABEL_MAP = "item {\n  id: 1\n  name: 'cereal'\n}\nitem {\n  id: 2\n  name: 'milk'\n}\n"
BLUE, RED = (20, 40, 200), (230, 20, 20)


def photo(size, box=None, orientation=1):
    """JPEG bytes of an upright photo of ``size`` with a red ``box`` (x, y, w, h), stored as a camera
    would: with EXIF orientation 6 the stored grid is the upright photo turned a quarter left."""
    upright = Image.new("RGB", size, BLUE)
    if box:
        x, y, w, h = box
        upright.paste(RED, (x, y, x + w, y + h))
    stored = upright.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else upright
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def real_folder(root, photos, annotations):
    (root / "images").mkdir(parents=True)
    for name, data in photos.items():
        (root / "images" / name).write_bytes(data)
    (root / "annotations.json").write_text(json.dumps(annotations))


def real_convert(*args):
    return realdata.main([str(a) for a in args] + FAST)


def test_real_photos_are_normalized_by_their_own_size_and_exif_is_respected(tmp_path):
    src = tmp_path / "real"
    real_folder(src / "store_a", {"big.jpg": photo((400, 300)), "small.jpg": photo((100, 50)),
                                  "unlabelled.jpg": photo((10, 10))}, [
        {"file_name": "big.jpg", "annotations": [{"label_id": 1, "bbox": [40, 30, 200, 150]}]},
        {"file_name": "small.jpg", "annotations": [{"label_id": 2, "bbox": [10, 5, 50, 25]}]},
        {"file_name": "gone.jpg", "annotations": [{"label_id": 1, "bbox": [0, 0, 1, 1]}]},
    ])
    real_folder(src / "store_b", {"turned.jpg": photo((60, 80), box=(10, 20, 30, 25), orientation=6)}, [
        {"file_name": "turned.jpg", "annotations": [{"label_id": 2, "bbox": [10, 20, 30, 25]}]},
    ])
    (tmp_path / "label_map.pbtxt").write_text(LABEL_MAP)
    assert real_convert("--source", src, "--label-map", tmp_path / "label_map.pbtxt", "--eval-pct", 0) == 0

    records = {r["image/filename"].decode(): r for r in read_records(str(src / "output" / "train" / "*.tfrecord"))}
    assert sorted(records) == ["store_a/images/big.jpg", "store_a/images/small.jpg", "store_b/images/turned.jpg"]
    assert_boxes_equal(record_boxes(records["store_a/images/big.jpg"]), [(1, 0.1, 0.1, 0.6, 0.6)])
    assert_boxes_equal(record_boxes(records["store_a/images/small.jpg"]), [(2, 0.1, 0.1, 0.6, 0.6)])
    assert records["store_a/images/big.jpg"]["image/object/class/text"] == [b"cereal"]

    # the stored grid of the turned photo is 80x60; its box must cover the red pixels TF decodes
    import tensorflow as tf
    turned = records["store_b/images/turned.jpg"]
    assert (turned["image/width"], turned["image/height"]) == (80, 60)
    pixels = tf.io.decode_jpeg(turned["image/encoded"]).numpy()
    (label, xmin, ymin, xmax, ymax), = record_boxes(turned)
    inside = pixels[round(ymin * 60) + 2:round(ymax * 60) - 2, round(xmin * 80) + 2:round(xmax * 80) - 2]
    assert inside.size and (inside[..., 0] > 180).all() and (inside[..., 2] < 80).all()
    # upright (x, y) lies at stored (y, 60 - x): corners (10, 20), (40, 45) -> (20, 50), (45, 20)
    assert_boxes_equal([(label, xmin, ymin, xmax, ymax)], [(2, 20 / 80, 20 / 60, 45 / 80, 50 / 60)])

    summary = json.loads((src / "output" / "summary.json").read_text())
    assert summary["images_reoriented"] == 1
    assert summary["skipped"] == {"missing image": 1, "image without annotations": 1}
    named = {e["item"]: e["reason"] for e in summary["skipped_examples"]}
    assert named["store_a/images/unlabelled.jpg"] == "image without annotations"
    assert named["store_a/annotations.json#gone.jpg"] == "missing image"


def test_real_photos_need_a_label_map(tmp_path, capsys):
    real_folder(tmp_path / "r", {"a.jpg": photo((20, 20))}, [{"file_name": "a.jpg", "annotations": []}])
    assert real_convert("--source", tmp_path / "r", "--eval-pct", 0) == 2
    assert "--label-map" in capsys.readouterr().err


def test_the_shared_coco_fixture_names_what_does_not_match(fixtures_dir, tmp_path, capsys):
    coco = fixtures_dir / "coco"
    code = real_convert("--coco", coco / "annotations" / "instances.json", "--images", coco / "images",
                        "--output", tmp_path / "out", "--eval-pct", 0)
    err = capsys.readouterr().err
    # its one annotated image is not among its images, and none of its images is annotated
    assert code == 1 and "no frame could be converted (4 item(s) skipped)" in err
    assert "missing image camera_91891091516384550185081373185892902457.png" in err
    assert "camera_001.png: image without annotations" in err
    assert not (tmp_path / "out").exists()


def test_coco_boxes_and_categories(fixtures_dir, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(fixtures_dir / "coco" / "images" / "camera_001.png",
                images / "camera_91891091516384550185081373185892902457.png")
    assert real_convert("--coco", fixtures_dir / "coco" / "annotations" / "instances.json", "--images", images,
                        "--output", tmp_path / "out", "--eval-pct", 0) == 0
    record, = read_records(str(tmp_path / "out" / "train" / "*.tfrecord"))
    width, height = record["image/width"], record["image/height"]
    assert (width, height) == Image.open(images / "camera_91891091516384550185081373185892902457.png").size
    values = [{"label_id": 27, "x": 30.0, "y": 50.0, "width": 100.0, "height": 100.0},
              {"label_id": 34, "x": 120.0, "y": 231.0, "width": 50.0, "height": 20.0},
              {"label_id": 25, "x": 132.0, "y": 83.0, "width": 10.0, "height": 20.0}]
    assert_boxes_equal(record_boxes(record), expected_boxes(values, width, height))
    assert [t.decode() for t in record["image/object/class/text"]] == ["car", "bicycle", "person"]
    label_map = (tmp_path / "out" / "label_map.pbtxt").read_text()
    assert labels.parse_label_map(label_map) == {25: "person", 27: "car", 34: "bicycle"}
