"""Make a synthetic Unity Simulation run (legacy Perception JSON), for the sample, tests and benchmarks.

``python -m tfproc.sample OUT_DIR [--app-params 3] [--instances 2] [--frames 6] [--size 320x240]``

The layout is that of a run transferred from Unity Simulation (formats.md section 1): every
instance has a failed ``attempt:0`` with partial data and a final ``attempt:1``. Annotations list a
semantic segmentation before the 2D boxes, a lidar capture has no values, some boxes cross the
image edge, some lie wholly outside it, and some frames have no boxes. Images are noisy PNGs, as
rendered frames are, so they compress like real ones.
"""
import argparse
import json
import os
import random
import zlib

BOX_DEFINITION_ID = "f9f22e05-443f-4602-a422-ebe4ea9b55cb"
LABELS = ["cereal", "milk", "soup", "tea", "coffee"]   # label ids 1..5


OBJECT_COLOURS = [(240, 240, 240), (250, 200, 0), (0, 200, 90), (200, 30, 200), (30, 30, 30)]


def noisy_png(width, height, rng, noise_bits=2, boxes=()):
    """A PNG of colour bands plus ``noise_bits`` of random noise per channel (1280x960: ~1.5 MB),
    with each box of ``boxes`` painted in its label's colour, so that a preview shows them."""
    mask = (1 << noise_bits) - 1
    rows = []
    for y in range(height):
        band = bytearray(bytes(((y * 255 // max(height - 1, 1)) & ~mask, (y * 7) & ~mask & 0xFF, 0x80)) * width)
        for box in boxes:
            if box["y"] <= y < box["y"] + box["height"]:
                x0, x1 = max(0, int(box["x"])), min(width, int(box["x"] + box["width"]))
                if x1 > x0:
                    band[3 * x0:3 * x1] = bytes(OBJECT_COLOURS[(box["label_id"] - 1) % len(OBJECT_COLOURS)]) * (x1 - x0)
        noise = rng.randbytes(width * 3)
        rows.append(b"\x00" + bytes((a & ~mask) | (b & mask) for a, b in zip(band, noise)))
    return _png(width, height, b"".join(rows))


def _png(width, height, raw):
    def chunk(kind, data):
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def random_boxes(rng, width, height):
    """0-4 boxes; about one in six crosses the edge and one in twelve lies outside the image."""
    boxes = []
    for _ in range(rng.choice([0, 1, 2, 3, 4])):
        label_id = rng.randint(1, len(LABELS))
        w, h = rng.randint(4, width // 3), rng.randint(4, height // 3)
        kind = rng.random()
        if kind < 0.08:
            x, y = width + rng.randint(0, 20), rng.randint(0, height - h)      # wholly outside
        elif kind < 0.25:
            x, y = -rng.randint(1, w - 1), rng.randint(0, height - h)           # crosses the left edge
        else:
            x, y = rng.randint(0, width - w), rng.randint(0, height - h)
        boxes.append({"label_id": label_id, "label_name": LABELS[label_id - 1],
                      "instance_id": rng.randint(1, 10 ** 6),
                      "x": float(x), "y": float(y), "width": float(w), "height": float(h)})
    return boxes


def write_dataset(root, frames, width, height, rng, captures_per_file=4, pngs=None):
    """Write one legacy Perception dataset under ``root`` (an attempt folder); return its frames.

    ``pngs``: images to use in turn instead of making a new one per frame.
    Returns ``[(image path relative to root, [box dicts])]``.
    """
    dataset, rgb = "Dataset%08x" % rng.getrandbits(32), "RGB%08x" % rng.getrandbits(32)
    os.makedirs(os.path.join(root, dataset))
    os.makedirs(os.path.join(root, rgb))
    definitions = {"version": "0.0.1", "annotation_definitions": [
        {"id": "12f94d8d-5425-4deb-9b21-5e53ad957d66", "name": "semantic segmentation",
         "format": "PNG", "spec": [{"label_name": name, "pixel_value": [i, 0, 0, 255]}
                                   for i, name in enumerate(LABELS)]},
        {"id": BOX_DEFINITION_ID, "name": "bounding box", "format": "JSON",
         "spec": [{"label_id": i + 1, "label_name": name} for i, name in enumerate(LABELS)]},
    ]}
    _write_json(os.path.join(root, dataset, "annotation_definitions.json"), definitions)
    written, captures = [], []
    for step in range(frames):
        image = "%s/rgb_%d.png" % (rgb, step + 2)
        boxes = random_boxes(rng, width, height)
        with open(os.path.join(root, image), "wb") as f:
            f.write(pngs[step % len(pngs)] if pngs else noisy_png(width, height, rng, boxes=boxes))
        written.append((image, boxes))
        captures.append({
            "id": "capture-%d" % step, "sequence_id": "seq", "step": step, "timestamp": step,
            "sensor": {"sensor_id": "camera", "modality": "camera"}, "ego": {},
            "filename": image, "format": "PNG",
            "annotations": [
                {"id": "seg-%d" % step, "annotation_definition": "12f94d8d-5425-4deb-9b21-5e53ad957d66",
                 "filename": "SemanticSegmentation/segmentation_%d.png" % step, "values": None},
                {"id": "box-%d" % step, "annotation_definition": BOX_DEFINITION_ID, "values": boxes},
            ]})
        if step == 0:
            captures.append({"id": "lidar-0", "sensor": {"sensor_id": "lidar", "modality": "lidar"},
                             "filename": "lidar/points_0.pcd", "annotations": []})
    for index in range(0, len(captures), captures_per_file):
        _write_json(os.path.join(root, dataset, "captures_%03d.json" % (index // captures_per_file)),
                    {"version": "0.0.1", "captures": captures[index:index + captures_per_file]})
    return written


def make_run(run_dir, app_params=3, instances=2, frames=6, width=320, height=240, seed=0,
             same_image=False):
    """Write a run; return ``{frame key: [box dicts]}`` of the frames a converter must keep.

    ``same_image`` reuses one noisy image for every frame (fast to make, for large benchmarks).
    """
    rng = random.Random(seed)
    pngs = [noisy_png(width, height, rng)] if same_image else None
    expected = {}
    for a in range(app_params):
        for i in range(instances):
            instance = os.path.join(run_dir, "urn:app_params:AP%d" % a, "instance:%d" % i)
            # a failed first attempt with partial data, superseded by attempt:1
            write_dataset(os.path.join(instance, "attempt:0"), max(1, frames // 2), width, height,
                          rng, pngs=pngs)
            final = write_dataset(os.path.join(instance, "attempt:1"), frames, width, height, rng,
                                  pngs=pngs)
            prefix = "urn:app_params:AP%d/instance:%d/attempt:1/" % (a, i)
            for image, boxes in final:
                expected[prefix + image] = boxes
    return expected


def _write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the run folder to create, e.g. sample/urn:run_executions:sample")
    parser.add_argument("--app-params", type=int, default=3)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--frames", type=int, default=6, help="frames per instance")
    parser.add_argument("--size", default="320x240", help="image WIDTHxHEIGHT")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if os.path.exists(args.out):
        parser.exit(2, "error: %s already exists; remove it or pick another folder\n" % args.out)
    width, height = (int(n) for n in args.size.lower().split("x"))
    expected = make_run(args.out, args.app_params, args.instances, args.frames, width, height, args.seed)
    print("Made a run of %d frames in %s" % (len(expected), args.out))


if __name__ == "__main__":
    from tfproc import startup
    startup.exit_quietly_on_signals()       # Ctrl-C: one line and 130, no traceback
    main()


SOLO_BOX_TYPE = "type.unity.com/unity.solo.BoundingBox2DAnnotation"
SOLO_SEGMENTATION_TYPE = "type.unity.com/unity.solo.SemanticSegmentationAnnotation"


def make_solo(dataset_dir, sequences=2, steps=3, cameras=2, width=320, height=240, seed=0):
    """Write a SOLO dataset (Perception 1.0+); return ``{frame key: [box dicts]}`` like ``make_run``.

    Every step has ``cameras`` RGB cameras; the segmentation annotation comes before the boxes.
    """
    rng = random.Random(seed)
    os.makedirs(dataset_dir)
    _write_json(os.path.join(dataset_dir, "metadata.json"), {"unityVersion": "2022.3", "perceptionVersion": "1.0.0"})
    _write_json(os.path.join(dataset_dir, "annotation_definitions.json"), {"annotationDefinitions": [
        {"@type": SOLO_SEGMENTATION_TYPE, "id": "semantic segmentation", "description": "",
         "spec": [{"label_name": name, "pixel_value": [i, 0, 0, 255]} for i, name in enumerate(LABELS)]},
        {"@type": SOLO_BOX_TYPE, "id": "bounding box", "description": "",
         "spec": [{"label_id": i + 1, "label_name": name} for i, name in enumerate(LABELS)]},
    ]})
    expected = {}
    for sequence in range(sequences):
        folder = os.path.join(dataset_dir, "sequence.%d" % sequence)
        os.makedirs(folder)
        for step in range(steps):
            captures = []
            for camera in range(cameras):
                filename = "step%d.camera%d.png" % (step, camera)
                boxes = random_boxes(rng, width, height)
                with open(os.path.join(folder, filename), "wb") as f:
                    f.write(noisy_png(width, height, rng, boxes=boxes))
                expected["sequence.%d/%s" % (sequence, filename)] = boxes
                captures.append({
                    "@type": "type.unity.com/unity.solo.RGBCamera", "id": "camera%d" % camera,
                    "description": "", "position": [0, 0, 0], "rotation": [0, 0, 0, 1],
                    "filename": filename, "imageFormat": "Png", "dimension": [width, height],
                    "annotations": [
                        {"@type": SOLO_SEGMENTATION_TYPE, "id": "semantic segmentation",
                         "sensorId": "camera%d" % camera, "filename": "step%d.seg%d.png" % (step, camera)},
                        {"@type": SOLO_BOX_TYPE, "id": "bounding box", "sensorId": "camera%d" % camera,
                         "values": [{"instanceId": b["instance_id"], "labelId": b["label_id"],
                                     "labelName": b["label_name"], "origin": [b["x"], b["y"]],
                                     "dimension": [b["width"], b["height"]]} for b in boxes]},
                    ]})
            _write_json(os.path.join(folder, "step%d.frame_data.json" % step),
                        {"frame": step, "sequence": sequence, "step": step, "captures": captures})
    return expected
