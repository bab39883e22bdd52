"""Make a small dataset in the layout of the published UnityGroceries-Real, for tests and the README.

``python -m tfproc.groceries_sample OUT_DIR [--photos 60] [--size 320x240] [--seed 0]``

Like ``groceries/v3/`` (formats.md section 4): ``images/IMG_*.JPG`` (JPEG photos), ``annotations.json``
(a list of ``{file_name, annotations: [{label_id, bbox: [x, y, w, h]}]}``),
``annotation_definitions.json`` (the names, those of the synthetic sample's label map) and one
``groceries_real_<split>.txt`` per split: ``train``/``val``/``test`` (60/20/20%), ``train_small`` (10% of
train), ``train_medium`` (50%), and the four test subsets: high and low foreground-to-background ratio
(boxes' share of the photo above or below the test split's median) and low and high contrast (the
photos are drawn with a flat or a strongly banded background). The photos are in a shuffled order,
so the splits' indices are too.
"""
import argparse
import io
import json
import os
import random

from tfproc import published
from tfproc.sample import LABELS, OBJECT_COLOURS

SPLITS = ("train", "val", "test", "train_small", "train_medium", "test_high_ratio", "test_low_ratio",
          "test_low_contrast", "test_high_contrast")


def make_groceries(out_dir, photos=60, width=320, height=240, seed=0):
    """Write the dataset; return ``{"annotations": [...], "splits": {split: [indices]}}`` as written."""
    from PIL import Image, ImageDraw
    rng = random.Random(seed)
    os.makedirs(os.path.join(out_dir, "images"))
    items, contrast, ratio = [], [], []
    for index in range(photos):
        high_contrast = index % 2 == 1
        image = Image.new("RGB", (width, height))
        draw = ImageDraw.Draw(image)
        for y in range(0, height, 8):
            shade = (40 + (y * 180 // height) if high_contrast else 120 + (y * 20 // height))
            draw.rectangle([0, y, width, y + 7], fill=(shade, shade, 110 if high_contrast else 120))
        boxes = []
        for _ in range(rng.randint(1, 3)):
            label_id = rng.randint(1, len(LABELS))
            w, h = rng.randint(width // 8, width // 3), rng.randint(height // 8, height // 3)
            x, y = rng.randint(0, width - w), rng.randint(0, height - h)
            draw.rectangle([x, y, x + w - 1, y + h - 1], fill=OBJECT_COLOURS[(label_id - 1) % len(OBJECT_COLOURS)])
            boxes.append({"label_id": label_id, "bbox": [x, y, w, h]})
        name = "IMG_%04d.JPG" % (4100 + index)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        with open(os.path.join(out_dir, "images", name), "wb") as f:
            f.write(buffer.getvalue())
        items.append({"file_name": name, "annotations": boxes})
        contrast.append(high_contrast)
        ratio.append(sum(b["bbox"][2] * b["bbox"][3] for b in boxes) / float(width * height))
    order = list(range(photos))
    rng.shuffle(order)
    train_end, val_end = int(photos * 0.6), int(photos * 0.8)
    train, val, test = order[:train_end], order[train_end:val_end], order[val_end:]
    median = sorted(ratio[i] for i in test)[len(test) // 2] if test else 0
    splits = {
        "train": train, "val": val, "test": test,
        "train_small": train[:max(1, len(train) // 10)], "train_medium": train[:max(1, len(train) // 2)],
        "test_high_ratio": [i for i in test if ratio[i] >= median],
        "test_low_ratio": [i for i in test if ratio[i] < median],
        "test_low_contrast": [i for i in test if not contrast[i]],
        "test_high_contrast": [i for i in test if contrast[i]],
    }
    with open(os.path.join(out_dir, "annotations.json"), "w") as f:
        json.dump(items, f)
    definitions = {"annotation_definitions": [{"id": 1, "name": "groceries", "format": "JSON", "spec": [
        {"label_id": i + 1, "label_name": name} for i, name in enumerate(LABELS)]}]}
    with open(os.path.join(out_dir, published.DEFINITIONS), "w") as f:
        json.dump(definitions, f)
    for split, indices in splits.items():
        with open(os.path.join(out_dir, published.file_name(split)), "w") as f:
            f.write(" ".join(str(i) for i in indices) + "\n")
    return {"annotations": items, "splits": splits}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tfproc.groceries_sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the photos")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error("--size must be WIDTHxHEIGHT, e.g. 320x240")
    if args.photos < 5:
        parser.error("--photos must be 5 or more, so that every split holds a photo")
    if os.path.exists(args.out_dir):
        parser.error("%s exists; pass a new folder" % args.out_dir)
    made = make_groceries(args.out_dir, args.photos, width, height, args.seed)
    print("wrote %d photos and %d split files to %s" % (len(made["annotations"]), len(made["splits"]), args.out_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
