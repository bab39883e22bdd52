"""The plain functions behind each pipeline step, with values worked out by hand."""
import io
import json

import pytest
from PIL import Image

from tfproc import annotations, boxes, imageheader, labels, layout, records, report, split
from tfproc.annotations import Box, BoxDefinition


def box(x, y, w, h, label=1):
    return Box(label, "", float(x), float(y), float(w), float(h))


# -- boxes -----------------------------------------------------------------------------------

def test_boxes_inside_are_scaled_to_unit():
    kept, clipped, dropped = boxes.normalize([box(10, 20, 30, 40)], 100, 200)
    assert [k[1:] for k in kept] == [(0.1, 0.1, 0.4, 0.3)]
    assert (clipped, dropped) == (0, 0)


def test_boxes_crossing_edges_are_clipped_and_counted():
    kept, clipped, dropped = boxes.normalize(
        [box(-10, -20, 30, 40), box(90, 190, 20, 20), box(0, 0, 100, 200)], 100, 200)
    assert [k[1:] for k in kept] == [(0.0, 0.0, 0.2, 0.1), (0.9, 0.95, 1.0, 1.0), (0.0, 0.0, 1.0, 1.0)]
    assert (clipped, dropped) == (2, 0)


def test_boxes_with_no_area_inside_are_dropped():
    kept, clipped, dropped = boxes.normalize(
        [box(100, 0, 10, 10), box(-20, 5, 20, 5), box(5, 5, 0, 10), box(5, 5, 5, 5)], 100, 200)
    assert [k[1:] for k in kept] == [(0.05, 0.025, 0.1, 0.05)]
    assert (clipped, dropped) == (0, 3)


# -- annotations -----------------------------------------------------------------------------

LEGACY_DEFS = {"annotation_definitions": [
    {"id": "seg", "name": "semantic segmentation", "spec": [{"label_name": "x", "pixel_value": 1}]},
    {"id": "3d", "name": "3d bounding box", "spec": [{"label_id": 9, "label_name": "car"}]},
    {"id": "F9F22E05-443F-4602-A422-EBE4EA9B55CB", "name": "renamed", "spec": [
        {"label_id": 1, "label_name": "cereal"}, {"label_id": 2, "label_name": "milk"}]},
]}


def test_legacy_box_definition_found_by_id_in_any_case():
    definition = annotations.box_definition(LEGACY_DEFS, "legacy")
    assert definition.ids == {"F9F22E05-443F-4602-A422-EBE4EA9B55CB"}
    assert definition.labels == {1: "cereal", 2: "milk"}


def test_legacy_box_definition_found_by_name():
    defs = {"annotation_definitions": [{"id": "4", "name": "2d bounding box", "spec": []}]}
    assert annotations.box_definition(defs, "legacy").ids == {"4"}


def test_missing_box_definition_is_bad_input():
    with pytest.raises(annotations.BadInput, match="no 2D bounding box definition"):
        annotations.box_definition({"annotation_definitions": [LEGACY_DEFS["annotation_definitions"][0]]}, "legacy")


def test_legacy_frames_take_boxes_by_definition_not_position():
    definition = BoxDefinition(frozenset({"bb"}), {1: "cereal"})
    doc = {"captures": [
        {"id": "c1", "sensor": {"modality": "camera"}, "filename": "RGB/rgb_2.png", "annotations": [
            {"annotation_definition": "seg", "values": None},
            {"annotation_definition": "3d", "values": [{"label_id": 9, "x": 1}]},
            {"annotation_definition": "bb", "values": [
                {"label_id": 1, "label_name": "cereal", "x": 1, "y": 2, "width": 3, "height": 4}]},
        ]},
        {"id": "c2", "sensor": {"modality": "camera"}, "filename": "RGB/rgb_3.png",
         "annotations": [{"annotation_definition": "bb", "values": []}]},
        {"id": "c3", "sensor": {"modality": "lidar"}, "filename": "lidar/0.pcd"},
        {"id": "c4", "sensor": {"modality": "camera"}, "filename": "RGB/rgb_4.png", "annotations": [
            {"annotation_definition": "bb", "values": [{"label_id": 1, "x": "a", "y": 0, "width": 1, "height": 1}]}]},
        {"id": "c5", "sensor": {"modality": "camera"}, "filename": "RGB/rgb_5.png", "annotations": [
            {"annotation_definition": "bb", "values": [{"label_id": 1, "x": 0, "y": 0, "width": -1, "height": 1}]}]},
    ]}
    frames, bad = annotations.legacy_frames(doc, definition, "D/captures_000.json")
    assert [(f.image, f.boxes) for f in frames] == [
        ("RGB/rgb_2.png", (Box(1, "cereal", 1.0, 2.0, 3.0, 4.0),)),
        ("RGB/rgb_3.png", ()),
    ]
    assert [(name, error.reason) for name, error in bad] == [
        ("D/captures_000.json#c4", "malformed box"), ("D/captures_000.json#c5", "malformed box")]


def test_solo_frames_one_per_camera_with_paths_under_the_sequence():
    definition = annotations.box_definition({"annotationDefinitions": [
        {"@type": "type.unity.com/unity.solo.SemanticSegmentationAnnotation", "id": "seg"},
        {"@type": "type.unity.com/unity.solo.BoundingBox2DAnnotation", "id": "bounding box",
         "spec": [{"label_id": 1, "label_name": "cereal"}]}]}, "solo")
    doc = {"frame": 0, "captures": [
        {"@type": "type.unity.com/unity.solo.RGBCamera", "id": "cam0", "filename": "step0.camera.png",
         "annotations": [
             {"@type": "type.unity.com/unity.solo.SemanticSegmentationAnnotation", "id": "seg"},
             {"@type": "type.unity.com/unity.solo.BoundingBox2DAnnotation", "id": "bounding box",
              "values": [{"labelId": 1, "labelName": "cereal", "origin": [5, 6], "dimension": [7, 8]}]}]},
        {"@type": "type.unity.com/unity.solo.RGBCamera", "id": "cam1", "filename": "step0.camera1.png",
         "annotations": []},
    ]}
    frames, bad = annotations.solo_frames(doc, definition, "solo/sequence.3/step0.frame_data.json", "sequence.3")
    assert [(f.image, f.boxes) for f in frames] == [
        ("sequence.3/step0.camera.png", (Box(1, "cereal", 5.0, 6.0, 7.0, 8.0),)),
        ("sequence.3/step0.camera1.png", ()),
    ]
    assert bad == []


# -- labels ----------------------------------------------------------------------------------

def test_label_ids_kept_when_they_start_at_one():
    label_map = labels.build_label_map(labels.merge([{1: {"a"}, 3: {"c"}}, {2: {"b"}}]))
    assert (label_map.names, label_map.shift, label_map.num_classes) == ({1: "a", 2: "b", 3: "c"}, 0, 3)
    assert label_map.to_pbtxt() == (
        'item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n  id: 2\n}\nitem {\n  name: "c"\n  id: 3\n}\n')


def test_label_ids_shift_by_one_when_a_dataset_uses_zero():
    label_map = labels.build_label_map({0: {"bg-thing"}, 1: {"a"}})
    assert (label_map.names, label_map.shift, label_map.num_classes) == ({1: "bg-thing", 2: "a"}, 1, 2)


def test_label_name_conflicts_are_reported():
    label_map = labels.build_label_map(labels.merge([{1: {"a"}}, {1: {"b"}}]))
    assert label_map.names == {1: "a"} and label_map.conflicts == ((1, ["a", "b"]),)


# -- split -----------------------------------------------------------------------------------

def test_split_is_stable_and_close_to_the_asked_share():
    keys = ["urn:app_params:A/instance:0/attempt:1/RGB/rgb_%d.png" % i for i in range(1000)]
    first = [split.split_of(k, 20) for k in keys]
    assert first == [split.split_of(k, 20) for k in keys]
    assert abs(first.count("eval") / 1000 - 0.20) <= 0.02
    assert all(split.split_of(k, 0) == "train" for k in keys)
    assert all(split.split_of(k, 100) == "eval" for k in keys)


def test_shards_are_all_used_and_counts_follow_size():
    assert split.num_shards(0, 100) == 1
    assert split.num_shards(75, 100) == 1      # shards average 3/4 of the limit
    assert split.num_shards(76, 100) == 2
    assert split.num_shards(10 ** 9, 1, frames=8) == 8         # never more shards than frames
    assert split.num_shards(10 ** 12, 1) == split.MAX_SHARDS
    used = {split.shard_of("k%d" % i, 8) for i in range(400)}
    assert used == set(range(8))
    assert split.shard_name("train", 3, 8) == "train-00003-of-00008.tfrecord"


# -- image header ----------------------------------------------------------------------------

def _image_bytes(fmt, size=(40, 30)):
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, fmt)
    return buffer.getvalue()


def test_header_gives_format_and_size():
    assert imageheader.read_header(_image_bytes("PNG")) == ("png", 40, 30, 1)
    assert imageheader.read_header(_image_bytes("JPEG", (33, 21))) == ("jpeg", 33, 21, 1)


def test_header_rejects_other_formats():
    for data in (b"not an image", _image_bytes("BMP")):
        with pytest.raises(ValueError, match="not a PNG/JPEG"):
            imageheader.read_header(data)


# -- records ---------------------------------------------------------------------------------

def test_examples_parse_in_tensorflow():
    import tensorflow as tf
    data = b"".join(records.encode_example({
        "b": records.bytes_feature([b"\x00\xff", "é"]),
        "f": records.float_feature([0.25, 1.0]),
        "i": records.int64_feature([0, -1, 2 ** 40]),
        "empty_i": records.int64_feature([]),
        "empty_f": records.float_feature([]),
    }))
    example = tf.train.Example.FromString(data)
    feature = example.features.feature
    assert list(feature["b"].bytes_list.value) == [b"\x00\xff", "é".encode()]
    assert list(feature["f"].float_list.value) == [0.25, 1.0]
    assert list(feature["i"].int64_list.value) == [0, -1, 2 ** 40]
    assert feature["empty_i"].WhichOneof("kind") == "int64_list"
    assert feature["empty_f"].WhichOneof("kind") == "float_list"
    # the same bytes TensorFlow itself writes (features in sorted order are deterministic there too)
    assert example.SerializeToString(deterministic=True) == data


def test_record_framing_reads_in_tf_data(tmp_path):
    import tensorflow as tf
    path = tmp_path / "x.tfrecord"
    chunks = records.frame_record([b"one"]) + records.frame_record([]) + records.frame_record([b"x" * 70000, b"yz"])
    path.write_bytes(b"".join(chunks))
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(path))] == [b"one", b"", b"x" * 70000 + b"yz"]


# -- layout ----------------------------------------------------------------------------------

def _touch(path, data=b"{}"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_layout_keeps_the_highest_attempt_and_ignores_the_output(tmp_path):
    run = tmp_path / "urn:run_executions:R"
    for attempt in ("attempt:0", "attempt:1", "attempt:2"):
        base = run / "urn:app_params:A" / "instance:0" / attempt
        _touch(base / "Dataset1" / "annotation_definitions.json")
        _touch(base / "Dataset1" / "captures_000.json")
        _touch(base / "RGB1" / "rgb_2.png", b"123")
    other = run / "urn:app_params:B" / "instance:3" / "attempt:0"
    _touch(other / "DatasetX" / "annotation_definitions.json")
    _touch(other / "DatasetX" / "captures_000.json")
    _touch(other / "DatasetX" / "captures_001.json")
    _touch(other / "DatasetX" / "metrics_000.json")
    _touch(run / "output" / "x" / "Dataset9" / "annotation_definitions.json")

    found = layout.find_datasets(str(run), exclude=str(run / "output"))
    assert [(d.key_prefix, d.kind, d.definitions) + layout.list_dataset(d) for d in found.datasets] == [
        ("urn:app_params:A/instance:0/attempt:2", "legacy", "Dataset1/annotation_definitions.json",
         ["Dataset1/captures_000.json"], {"RGB1/rgb_2.png": 3}),
        ("urn:app_params:B/instance:3/attempt:0", "legacy", "DatasetX/annotation_definitions.json",
         ["DatasetX/captures_000.json", "DatasetX/captures_001.json"], {}),
    ]
    assert found.superseded == ["urn:app_params:A/instance:0/attempt:0", "urn:app_params:A/instance:0/attempt:1"]
    assert found.datasets[0].root == str(run / "urn:app_params:A" / "instance:0" / "attempt:2")
    assert found.skipped == []


def test_layout_finds_solo_datasets(tmp_path):
    for name in ("solo_a", "solo_b"):
        _touch(tmp_path / name / "annotation_definitions.json")
        _touch(tmp_path / name / "metadata.json")
        _touch(tmp_path / name / "sequence.0" / "step0.frame_data.json")
        _touch(tmp_path / name / "sequence.0" / "step0.camera.png", b"1")
    found = layout.find_datasets(str(tmp_path))
    listed = [layout.list_dataset(d) for d in found.datasets]
    assert [(d.key_prefix, d.kind, files, sorted(images)) for d, (files, images) in zip(found.datasets, listed)] == [
        ("solo_a", "solo", ["sequence.0/step0.frame_data.json"], ["sequence.0/step0.camera.png"]),
        ("solo_b", "solo", ["sequence.0/step0.frame_data.json"], ["sequence.0/step0.camera.png"]),
    ]


def test_layout_of_a_single_dataset_folder(fixtures_dir):
    found = layout.find_datasets(str(fixtures_dir / "simrun"))
    files, images = layout.list_dataset(found.datasets[0])
    assert [d.key_prefix for d in found.datasets] == [""]
    assert files == ["Dataset/captures_000.json", "Dataset/captures_001.json"]
    assert "captures/camera_000.png" in images


def test_layout_of_a_folder_without_datasets(tmp_path):
    _touch(tmp_path / "a" / "b.json")
    assert layout.find_datasets(str(tmp_path)).datasets == []
    assert layout.find_datasets(str(tmp_path / "absent")).files_listed == 0


# -- reports ---------------------------------------------------------------------------------

def test_reports_merge_in_any_order():
    a, b = report.new(), report.new()
    report.split_counts(a, "train")["images"] = 2
    report.split_counts(a, "train")["classes"]["1"] = 3
    report.split_counts(b, "train")["classes"]["1"] = 4
    report.add_skipped(a, "z", "missing image")
    report.add_skipped(b, "a", "invalid JSON", "line 1")
    merged = report.merge([a, report.merge([b])])
    assert merged == report.merge([b, a])
    assert merged["splits"]["train"]["classes"] == {"1": 7}
    assert merged["skipped"] == {"missing image": 1, "invalid JSON": 1}
    assert merged["skipped_examples"][0] == ["a", "invalid JSON", "line 1"]
    json.dumps(merged)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_boxes_move_onto_the_stored_grid_for_every_exif_orientation(orientation):
    """Pillow's exif_transpose turns the stored grid upright; our mapping must be its inverse."""
    from PIL import ImageOps
    upright = Image.new("RGB", (60, 40), (0, 0, 255))
    upright.paste((255, 0, 0), (5, 10, 25, 30))    # the box x 5..25, y 10..30 on the upright photo
    undo = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}
    stored = upright.transpose(undo[orientation]) if orientation in undo else upright.copy()
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.info["exif"] = exif.tobytes()
    stored.getexif()[0x0112] = orientation
    assert ImageOps.exif_transpose(stored).tobytes() == upright.tobytes()

    (moved,) = boxes.to_stored_grid([box(5, 10, 20, 20)], orientation, *stored.size)
    x0, y0, x1, y1 = int(moved.x), int(moved.y), int(moved.x + moved.width), int(moved.y + moved.height)
    inside = stored.crop((x0, y0, x1, y1))
    assert inside.size == (20, 20)
    assert inside.getcolors() == [(400, (255, 0, 0))]


def test_records_read_back_without_tensorflow(tmp_path):
    features = {"b": records.bytes_feature([b"\x00\xff", "é"]), "f": records.float_feature([0.25, 1.0]),
                "i": records.int64_feature([0, -1, 2 ** 40]), "e": records.int64_feature([])}
    path = tmp_path / "x.tfrecord"
    path.write_bytes(b"".join(records.frame_record(records.encode_example(features)) * 2))
    with open(path, "rb") as f:
        decoded = [records.decode_example(r) for r in records.read_records(f)]
    assert decoded == [{"b": [b"\x00\xff", "é".encode()], "f": [0.25, 1.0], "i": [0, -1, 2 ** 40], "e": []}] * 2
    corrupt = bytearray(path.read_bytes())
    corrupt[20] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    with open(path, "rb") as f, pytest.raises(ValueError, match="CRC"):
        list(records.read_records(f))
