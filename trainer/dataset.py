"""What the trainer needs to know of a conversion output (local or gs://): classes, splits, sizes."""
import collections
import dataclasses
import json

import tensorflow as tf

from tfproc import labels


class DatasetError(Exception):
    """A conversion output that cannot be trained or evaluated on; the message says why."""


@dataclasses.dataclass
class Dataset:
    path: str
    num_classes: int          # ours: class ids 1..num_classes (Model Garden adds the background)
    names: dict               # {class id: name}
    images: dict              # {split: images}

    def pattern(self, split):
        return "%s/%s/*.tfrecord" % (self.path, split)


def load(path):
    path = path.rstrip("/")
    try:
        with tf.io.gfile.GFile(path + "/summary.json") as f:
            summary = json.load(f)
        with tf.io.gfile.GFile(path + "/label_map.pbtxt") as f:
            names = labels.parse_label_map(f.read())
        num_classes = int(summary["num_classes"])
        images = {split: int(summary["splits"][split]["images"]) for split in ("train", "eval")}
    except tf.errors.NotFoundError:
        raise DatasetError("%s is not a complete conversion output (no summary.json or label_map.pbtxt); "
                           "pass the --output folder of `python main.py` or `real_data_loader.py`" % path)
    except (ValueError, KeyError, TypeError, labels.BadLabelMap) as error:
        raise DatasetError("%s: unreadable summary.json or label map (%s)" % (path, error))
    return Dataset(path, num_classes, names, images)


def common_resolution(dataset, split="train", sample=200):
    """``(height, width)`` most frequent among the first ``sample`` records of a split."""
    features = {"image/height": tf.io.FixedLenFeature([], tf.int64),
                "image/width": tf.io.FixedLenFeature([], tf.int64)}
    files = tf.io.gfile.glob(dataset.pattern(split))
    if not files:
        raise DatasetError("no %s records under %s" % (split, dataset.path))
    counts = collections.Counter()
    for record in tf.data.TFRecordDataset(sorted(files)).take(sample):
        parsed = tf.io.parse_single_example(record, features)
        counts[(int(parsed["image/height"]), int(parsed["image/width"]))] += 1
    if not counts:
        raise DatasetError("the %s records under %s are empty" % (split, dataset.path))
    return counts.most_common(1)[0][0]
