"""What the trainer needs to know of a conversion output (local or gs://): classes, splits, sizes."""
import collections
import dataclasses
import json

import tensorflow as tf

from tfproc import labels, published


class DatasetError(Exception):
    """A conversion output that cannot be trained or evaluated on; the message says why."""


@dataclasses.dataclass
class Dataset:
    path: str
    num_classes: int          # ours: class ids 1..num_classes (Model Garden adds the background)
    names: dict               # {class id: name}
    images: dict              # {split: images}: train and eval, or the published splits (train, val, test, ...)

    def pattern(self, split):
        return "%s/%s/*.tfrecord" % (self.path, split)

    def check_split(self, split, option="--split"):
        """Refuse a split the dataset does not hold, naming those it does."""
        if split not in self.images:
            raise DatasetError("%s %s: %s holds no such split; its splits: %s" % (
                option, split, self.path, ", ".join("%s (%d images)" % item for item in self.images.items())))
        return split

    def default_eval_split(self):
        """``eval``; where there is none, ``val`` (the published UnityGroceries-Real splits); else None."""
        return published.default_eval_split(self.images)


def load(path):
    path = path.rstrip("/")
    try:
        with tf.io.gfile.GFile(path + "/summary.json") as f:
            summary = json.load(f)
        with tf.io.gfile.GFile(path + "/label_map.pbtxt") as f:
            names = labels.parse_label_map(f.read())
        num_classes = int(summary["num_classes"])
        images = {split: int(summary["splits"][split]["images"]) for split in published.ordered(summary["splits"])}
    except tf.errors.NotFoundError:
        raise DatasetError("%s is not a complete conversion output (no summary.json or label_map.pbtxt); "
                           "pass the --output folder of `python main.py` or `real_data_loader.py`" % path)
    except (ValueError, KeyError, TypeError, labels.BadLabelMap) as error:
        raise DatasetError("%s: unreadable summary.json or label map (%s)" % (path, error))
    return Dataset(path, num_classes, names, images)


def common_resolution(dataset, split="train", sample=200):
    """``(height, width)`` most frequent among the first ``sample`` records of a split, read with the
    project's own record reader: no TensorFlow op runs, so a multi-worker strategy can still be
    created afterwards (TensorFlow refuses once its runtime has started)."""
    from tfproc import records as record_reader
    files = sorted(tf.io.gfile.glob(dataset.pattern(split)))
    if not files:
        raise DatasetError("no %s records under %s" % (split, dataset.path))
    counts = collections.Counter()
    for path in files:
        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                for data in record_reader.read_records(f):
                    example = record_reader.decode_example(data)
                    counts[(int(example["image/height"][0]), int(example["image/width"][0]))] += 1
                    if sum(counts.values()) >= sample:
                        return counts.most_common(1)[0][0]
        except (ValueError, KeyError, IndexError) as error:
            raise DatasetError("a shard of %s is damaged (%s: %s); convert the dataset again"
                               % (dataset.path, path, error))
    if not counts:
        raise DatasetError("the %s records under %s are empty" % (split, dataset.path))
    return counts.most_common(1)[0][0]


def records(dataset, split):
    """A split's records as dicts: encoded bytes, size, source id, boxes [ymin, xmin, ymax, xmax] and labels."""
    features = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "image/source_id": tf.io.FixedLenFeature([], tf.string),
        "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
        "image/object/class/label": tf.io.VarLenFeature(tf.int64),
    }

    def parse(serialized):
        raw = tf.io.parse_single_example(serialized, features)
        corners = [tf.sparse.to_dense(raw["image/object/bbox/" + k]) for k in ("ymin", "xmin", "ymax", "xmax")]
        return {"encoded": raw["image/encoded"], "height": raw["image/height"], "width": raw["image/width"],
                "source_id": tf.strings.to_number(raw["image/source_id"], tf.int64),
                "filename": raw["image/filename"],
                "boxes": tf.stack(corners, axis=-1), "labels": tf.sparse.to_dense(raw["image/object/class/label"])}

    files = sorted(tf.io.gfile.glob(dataset.pattern(split)))
    return _Records(tf.data.TFRecordDataset(files).map(parse))


class _Records:
    """tf.data records with boxes and labels as Python lists when iterated."""

    def __init__(self, data):
        self.data = data

    def take(self, count):
        for record in self.data.take(count):
            out = dict(record)
            out["boxes"] = out["boxes"].numpy().tolist()
            out["labels"] = out["labels"].numpy().tolist()
            yield out
