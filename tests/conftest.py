import glob
import os
import pathlib
import socket

import pytest

from fakes import FakeServer, write_service_account

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures" / "datasetinsights-mock"


def read_records(pattern):
    """Every record matching ``pattern`` (or in a list of files) as a dict, read back with tf.data."""
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
    files = sorted(pattern) if isinstance(pattern, list) else sorted(tf.io.gfile.glob(pattern))
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


BUCKET = "synthdet-test"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cloud:
    """The loopback stand-ins for Google Cloud: a GCS emulator and a fake of the other APIs."""

    def __init__(self, storage_client, google):
        self.storage = storage_client
        self.google = google
        self.bucket = BUCKET


@pytest.fixture(scope="session")
def cloud(tmp_path_factory):
    """GCS emulator (gcp-storage-emulator) plus a fake OAuth token endpoint, ml v1 and Cloud Logging,
    all on 127.0.0.1; credentials from a service-account file whose token_uri is the fake's."""
    from gcp_storage_emulator.server import create_server
    from google.cloud import storage

    saved = dict(os.environ)
    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    with FakeServer() as google:
        os.environ.update({
            "STORAGE_EMULATOR_HOST": "http://127.0.0.1:%d" % port,
            "GOOGLE_APPLICATION_CREDENTIALS": write_service_account(
                str(tmp_path_factory.mktemp("creds") / "sa.json"), google.url + "/token"),
            "GOOGLE_CLOUD_PROJECT": "test-project",
            "NO_GCE_CHECK": "true",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_ML": google.url + "/",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_LOGGING": google.url + "/",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_AIPLATFORM": google.url + "/",
        })
        try:
            yield Cloud(storage.Client(project="test-project"), google)
        finally:
            server.stop()
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture
def google(cloud):
    """The fake Google APIs, with no routes but the token endpoint and an empty request log."""
    cloud.google.routes = cloud.google.routes[:1]
    cloud.google.requests.clear()
    return cloud.google
