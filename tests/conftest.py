import glob
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures" / "datasetinsights-mock"


def read_records(pattern):
    """Every record matching ``pattern`` as a dict, read back with tf.data."""
    import tensorflow as tf

    features = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/format": tf.io.FixedLenFeature([], tf.string),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
        "image/source_id": tf.io.FixedLenFeature([], tf.string),
        "image/key/sha256": tf.io.FixedLenFeature([], tf.string),
        "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
        "image/object/class/label": tf.io.VarLenFeature(tf.int64),
        "image/object/class/text": tf.io.VarLenFeature(tf.string),
        "image/object/area": tf.io.VarLenFeature(tf.float32),
        "image/object/is_crowd": tf.io.VarLenFeature(tf.int64),
    }
    files = sorted(tf.io.gfile.glob(pattern))
    out = []
    if not files:
        return out
    for serialized in tf.data.TFRecordDataset(files):
        parsed = tf.io.parse_single_example(serialized, features)
        record = {}
        for name, value in parsed.items():
            if isinstance(value, tf.sparse.SparseTensor):
                value = value.values
            value = value.numpy()
            record[name] = value.tolist() if hasattr(value, "tolist") else value
        out.append(record)
    return out


def convert(*args):
    """Run ``main.py`` in this process; return its exit code."""
    from tfproc import cli
    return cli.main([str(a) for a in args])


@pytest.fixture
def fixtures_dir():
    if not FIXTURES.exists():
        pytest.skip("shared fixtures not found at %s" % FIXTURES)
    return FIXTURES


def tfrecords_under(path):
    return sorted(glob.glob(os.path.join(str(path), "**", "*.tfrecord"), recursive=True))
