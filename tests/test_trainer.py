"""The trainer: TF Model Garden's RetinaNet trained, evaluated, exported and resumed on our records (CPU)."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import convert
from tfproc import sample, split

W, H = 128, 96
# a small, fast configuration: MobileNetV2 at 0.35 width, thin FPN and head, 128x128 input
SMALL = ["--backbone", "mobilenet", "--fpn-type", "fpn", "--train-batch-size", "2", "--image-size", "128,128",
         "--params-override", "{task: {model: {head: {num_filters: 32, num_convs: 1}, decoder: {fpn: {num_filters: 32}},"
                              " backbone: {mobilenet: {filter_size_scale: 0.35}}}}, trainer: {steps_per_loop: 2}}"]


def trainer(*args):
    from trainer.cli import main
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    sample.make_run(str(base / "run"), app_params=2, instances=2, frames=8, width=W, height=H, seed=5)
    assert convert("--source", base / "run", "--eval-pct", 25, "--output", base / "out") == 0
    return base / "out"


def test_our_records_feed_model_gardens_decoder(converted):
    """Model Garden's own decoder: a numeric source id, boxes, classes and pixel areas as written."""
    import tensorflow as tf
    from official.vision.dataloaders import tf_example_decoder
    decoder = tf_example_decoder.TfExampleDecoder(include_mask=False, regenerate_source_id=False)
    files = sorted(tf.io.gfile.glob(str(converted / "eval" / "*.tfrecord")))
    decoded = [decoder.decode(record) for record in tf.data.TFRecordDataset(files)]
    assert decoded
    for item in decoded:
        source_id = int(item["source_id"].numpy())       # what the evaluator's process_source_id does
        assert 0 <= source_id < 2 ** split.SOURCE_ID_BITS
        boxes = item["groundtruth_boxes"].numpy()        # ymin, xmin, ymax, xmax, normalized
        expected = (boxes[:, 2] - boxes[:, 0]) * H * (boxes[:, 3] - boxes[:, 1]) * W
        assert np.allclose(item["groundtruth_area"].numpy(), expected, rtol=1e-4)
        assert ((item["groundtruth_classes"].numpy() >= 1) & (item["groundtruth_classes"].numpy() <= 5)).all()
        assert (int(item["height"]), int(item["width"])) == (H, W)


def test_train_evaluate_export_and_resume(converted, tmp_path):
    model_dir = tmp_path / "m1"
    code, out, err = trainer("train", "--dataset", converted, "--model-dir", model_dir, "--max-steps", 4,
                             "--train-steps-per-eval", 4, *SMALL)
    assert code == 0, err
    assert "step 4/4" in err and "evaluation at step 4" in err
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["step"] == 4
    for key in ("AP", "AP50", "AP75", "APs", "APm", "ARmax1", "ARmax10", "ARmax100", "total_loss"):
        assert np.isfinite(metrics[key]), key
    assert metrics["APm"] >= 0            # pixel areas: medium objects exist (a fraction would make all small)
    params = (model_dir / "params.yaml").read_text()
    assert "num_classes: 6" in params     # our 5 classes and Model Garden's background
    assert len([n for n in os.listdir(model_dir) if n.endswith(".index")]) <= 3

    code, out, err = trainer("evaluate", "--dataset", converted, "--model-dir", model_dir)
    assert code == 0, err
    assert "ARmax100" in out and "cereal" in out
    scored = json.loads((model_dir / ("eval_" + converted.name) / "metrics.json").read_text())
    assert scored["step"] == 4 and set(scored["per_class_AP"]) <= set(sample.LABELS)

    code, out, err = trainer("export", "--model-dir", model_dir)
    assert code == 0, err
    import tensorflow as tf
    loaded = tf.saved_model.load(str(model_dir / "export"))
    image = tf.zeros([1, 128, 128, 3], tf.uint8)
    detections = loaded.signatures["serving_default"](inputs=image)
    assert {"detection_boxes", "detection_classes", "detection_scores", "num_detections"} <= set(detections)

    code, out, err = trainer("train", "--dataset", converted, "--model-dir", model_dir, "--max-steps", 6,
                             "--train-steps-per-eval", 6, *SMALL)
    assert code == 0, err
    assert "resuming from the checkpoint at step 4" in err and "step 6/6" in err
    assert json.loads((model_dir / "metrics.json").read_text())["step"] == 6
    code, _, err = trainer("train", "--dataset", converted, "--model-dir", model_dir, "--max-steps", 6, *SMALL)
    assert code == 2 and "already trained to step 6" in err


def test_bad_arguments_end_with_one_line(converted, tmp_path):
    code, _, err = trainer("train", "--dataset", tmp_path / "nothing", "--model-dir", tmp_path / "m")
    assert code == 2 and "not a complete conversion output" in err
    code, _, err = trainer("train", "--dataset", converted, "--model-dir", tmp_path / "m", "--num-eval-images", 999)
    assert code == 2 and "the eval split holds" in err
    code, _, err = trainer("train", "--dataset", converted, "--model-dir", tmp_path / "m", "--image-size", "big")
    assert code == 2 and "--image-size" in err


def test_a_promised_gpu_that_is_not_there_stops_the_job_at_once(converted, tmp_path):
    """On this CPU machine, a job promised a GPU exits within a minute with one line naming the
    machine and what TensorFlow sees, before reading the dataset or building the model."""
    import subprocess
    import sys
    import time
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "trainer", "train", "--dataset", str(converted), "--model-dir",
                           str(tmp_path / "m"), "--expect-accelerator", "gpu:1", "--machine-type", "g2-standard-8",
                           *SMALL], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    took = time.monotonic() - began
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "machine g2-standard-8 was promised 1 GPU(s) but TensorFlow sees 0 (devices: CPU:0)" in lines[0]
    assert took < 60 and not (tmp_path / "m").exists()


def test_the_strategy_fits_the_machine():
    from trainer import devices
    assert devices.choose("auto", gpus=0, tpus=0, machines=1) == "one_device"
    assert devices.choose("auto", gpus=1, tpus=0, machines=1) == "one_device"
    assert devices.choose("auto", gpus=4, tpus=0, machines=1) == "mirrored"
    assert devices.choose("auto", gpus=0, tpus=8, machines=1) == "tpu"
    assert devices.choose("auto", gpus=1, tpus=0, machines=3) == "multi_worker_mirrored"
    assert devices.choose("mirrored", gpus=0, tpus=0, machines=1) == "mirrored"
    vertex = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 0}})
    assert devices.cluster(vertex) == (3, "worker", 0) and not devices.is_chief(vertex)
    assert devices.is_chief(json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief"}}))
    assert devices.cluster("") == (1, "chief", 0) and devices.is_chief("")
    assert devices.parse_promise("gpu:2") == ("gpu", 2) and devices.parse_promise("") is None
    for bad in ("gpu", "gpu:0", "fpga:1"):
        with pytest.raises(ValueError):
            devices.parse_promise(bad)
    devices.check_promise(("gpu", 2), gpus=2, tpus=0, seen=["CPU:0", "GPU:0", "GPU:1"])
    with pytest.raises(devices.AcceleratorMissing, match="promised 2 GPU.*sees 1"):
        devices.check_promise(("gpu", 2), gpus=1, tpus=0, seen=["CPU:0", "GPU:0"], machine_type="g2-standard-24")
