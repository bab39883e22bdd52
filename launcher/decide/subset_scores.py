"""A subset's COCO scores from those of the split that holds it, with no new detection.

The published UnityGroceries-Real's ``test_low_contrast`` (and the other ``test_*`` subsets) are
parts of ``test``. pycocotools matches detections image by image, so the rows of ``test``'s
per-image matches (``trainer.cocoap``) that belong to the subset's images give, accumulated, the
very numbers pycocotools gives on the subset alone: the same AP, AP50, AP75, ARmax1/10/100 and
per-class AP, without running the model again.
"""
import json

from tfproc import fsutil, labels, records
from trainer import cocoap


def source_ids(dataset, split):
    """The source ids (the match table's image ids) of a split's records; no image is decoded."""
    import tensorflow as tf
    ids = set()
    for path in sorted(tf.io.gfile.glob(fsutil.join(fsutil.join(dataset, split), "*.tfrecord"))):
        with tf.io.gfile.GFile(path, "rb") as f:
            for raw in records.read_records(f):
                ids.add(int(records.decode_example(raw)["image/source_id"][0]))
    return ids


def derive(scored, dataset, subset, output):
    """``scored`` (the metrics of a split, with its ``matches``) restricted to ``subset``'s images,
    written to OUTPUT (metrics.json and matches.json) and returned; None when the subset holds an
    image that split was not scored on (it is not a part of it)."""
    doc = json.loads(fsutil.read_bytes(scored["matches"]))
    ids = source_ids(dataset, subset)
    if not ids or not ids <= set(doc["images"]):
        return None
    doc = cocoap.subset(doc, ids, subset)
    table = cocoap.Table(doc)
    names = labels.parse_label_map(fsutil.read_bytes(fsutil.join(dataset, "label_map.pbtxt")).decode("utf-8"))
    per_class = table.per_class("AP")
    metrics = {key: table.metric(key) for key in cocoap.SUPPORTED}
    metrics.update({key: scored[key] for key in ("step", "dataset", "checkpoint", "checkpoint_digest") if key in scored})
    metrics.update(split=subset, images=len(doc["images"]), derived_from=scored.get("split"),
                   per_class_AP={name: -1.0 if per_class.get(class_id) is None else per_class[class_id]
                                 for class_id, name in sorted(names.items())})
    fsutil.write_atomically(fsutil.join(output, cocoap.MATCHES), json.dumps(doc, separators=(",", ":")).encode())
    fsutil.write_json(fsutil.join(output, "metrics.json"), metrics)
    return dict(metrics, matches=fsutil.join(output, cocoap.MATCHES))
