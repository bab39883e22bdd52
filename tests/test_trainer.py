"""The trainer: TF Model Garden's RetinaNet trained, evaluated, exported and resumed on our records (CPU)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import convert, read_records
from tfproc import sample, split

W, H = 128, 96
# a small, fast configuration: MobileNetV2 at 0.35 width, thin FPN and head, 128x128 input
SMALL = ["--backbone", "mobilenet", "--fpn-type", "fpn", "--train-batch-size", "2", "--image-size", "128,128",
         "--params-override", "{task: {model: {head: {num_filters: 32, num_convs: 1}, decoder: {fpn: {num_filters: 32}},"
                              " backbone: {mobilenet: {filter_size_scale: 0.35}}}}, trainer: {steps_per_loop: 2}}"]


# a model trained a few steps scores below the detection generator's 0.05: keep every box
EVERY_DETECTION = "{task: {model: {detection_generator: {pre_nms_score_threshold: 0.0}}}}"


def trainer(*args, cwd=None):
    """``python -m trainer ARGS`` as a user types it, from ``cwd``."""
    done = subprocess.run([sys.executable, "-m", "trainer"] + [str(a) for a in args], cwd=cwd, capture_output=True,
                          text=True, timeout=900)
    return done.returncode, done.stdout, done.stderr


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


def progress_steps(err):
    return [int(line.split(" step ", 1)[1].split("/")[0]) for line in err.splitlines() if "] step " in line]


def test_train_evaluate_predict_export_and_resume(converted, tmp_path):
    """Every command as a user types it, from a working folder of its own with relative paths."""
    os.symlink(converted, tmp_path / "data")
    here = {"cwd": tmp_path}
    model_dir = tmp_path / "runs" / "m1"
    # loops of 2 steps do not divide the evaluation interval of 3: Orbit shortens loops to land on
    # each evaluation, and every step reported must be the true one
    code, out, err = trainer("train", "--dataset", "data", "--model-dir", "runs/m1", "--max-steps", 6,
                             "--train-steps-per-eval", 3, *SMALL, "--params-override", EVERY_DETECTION, **here)
    assert code == 0, err
    assert progress_steps(err) == [2, 3, 5, 6], err
    assert [int(line.split("evaluation at step ")[1].split(" ")[0]) for line in err.splitlines()
            if "evaluation at step" in line] == [3, 6]
    assert "starting from scratch (random weights)" in err
    assert len((out + err).splitlines()) < 40, out + err          # quiet: TensorFlow's chatter is in the log
    assert "WARNING" not in err and "Traceback" not in err
    assert "note: MobileNetV2's last 1x1 layer feeds no detection level" in err     # the warning, explained
    log = (model_dir / "train.log").read_text()
    assert "train | step:" in log and "training mobilenet" in log      # Orbit's lines and ours
    assert "learning rate: linear warm-up from 0.01 to 0.001 over the first 1 steps" in err
    metrics = json.loads((model_dir / "metrics.json").read_text())
    eval_images = json.loads((tmp_path / "data" / "summary.json").read_text())["splits"]["eval"]["images"]
    assert metrics["step"] == 6 and metrics["images"] == eval_images        # every eval image, once
    for key in ("AP", "AP50", "AP75", "APs", "APm", "ARmax1", "ARmax10", "ARmax100", "total_loss"):
        assert np.isfinite(metrics[key]), key
    assert metrics["APm"] >= 0            # pixel areas: medium objects exist (a fraction would make all small)
    history = [json.loads(line) for line in (model_dir / "metrics_history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [3, 6]
    for entry in history:
        assert {"AP", "AP50", "ARmax100", "per_class_AP", "total_loss", "train_loss", "wall_time"} <= set(entry)
    from PIL import Image
    assert Image.open(model_dir / "learning_curve.png").size == (900, 700)
    best = json.loads((model_dir / "best" / "best.json").read_text())
    assert best["metric"] == "AP" and best["step"] in (3, 6)
    assert best["value"] == max(h["AP"] for h in history)
    assert (model_dir / "best" / (best["checkpoint"] + ".index")).exists()
    params_yaml = (model_dir / "params.yaml").read_text()
    assert "num_classes: 6" in params_yaml     # our 5 classes and Model Garden's background
    assert len([n for n in os.listdir(model_dir) if n.endswith(".index")]) <= 3
    converted, model_dir_arg = "data", "runs/m1"

    code, out, err = trainer("evaluate", "--dataset", converted, "--model-dir", model_dir_arg, **here)
    assert code == 0, err
    assert "ARmax100" in out and "cereal" in out
    (folder,) = os.listdir(model_dir / "eval")
    assert folder.startswith(os.path.basename(str(tmp_path)) + "_data-eval-")
    scored = json.loads((model_dir / "eval" / folder / "metrics.json").read_text())
    assert scored["step"] == 6 and set(scored["per_class_AP"]) <= set(sample.LABELS)
    assert Image.open(model_dir / "eval" / folder / "pr_curves.png").size == (900, 640)
    assert (model_dir / "eval" / folder / "evaluate.log").exists() and "creating index" not in out + err
    code, out, err = trainer("evaluate", "--dataset", converted, "--model-dir", model_dir_arg, "--checkpoint", "best",
                             "--output", "best_eval", **here)
    assert code == 0, err
    assert json.loads((tmp_path / "best_eval" / "metrics.json").read_text())["step"] == best["step"]
    code, _, err = trainer("evaluate", "--dataset", converted, "--model-dir", model_dir_arg, "--checkpoint", "1", **here)
    assert code == 2 and "no checkpoint of step 1" in err

    code, out, err = trainer("predict", "--dataset", converted, "--model-dir", model_dir_arg, "--output",
                             "pred", "--min-score", 0, "--max-images", 3, "--checkpoint", "best", **here)
    assert code == 0, err
    detections = json.loads((tmp_path / "pred" / "detections.json").read_text())
    source_ids = {int(r["image/source_id"]) for r in read_records(str(tmp_path / "data" / "eval" / "*.tfrecord"))}
    assert detections and {d["image_id"] for d in detections} <= source_ids
    for item in detections:
        x, y, w, h = item["bbox"]
        assert 0 <= x <= W and 0 <= y <= H and w >= 0 and h >= 0 and 1 <= item["category_id"] <= 5
    assert Image.open(tmp_path / "pred" / "contact_sheet.png").size[0] == 3 * (320 + 10) + 10     # 3 tiles, gaps

    code, out, err = trainer("export", "--model-dir", model_dir_arg, "--checkpoint", "best", **here)
    assert "WARNING" not in out + err
    assert code == 0, err
    import tensorflow as tf
    loaded = tf.saved_model.load(str(model_dir / "export"))
    (record,) = read_records(str(tmp_path / "data" / "eval" / "*.tfrecord"))[:1]
    image = tf.io.decode_png(record["image/encoded"], channels=3)
    bigger = tf.cast(tf.image.resize(image, [2 * H, 2 * W], method="nearest"), tf.uint8)
    small = loaded.signatures["serving_default"](inputs=image[tf.newaxis])
    large = loaded.signatures["serving_default"](inputs=bigger[tf.newaxis])
    assert {"detection_boxes", "detection_classes", "detection_scores", "num_detections"} <= set(small)
    for found in (small, large):
        boxes = found["detection_boxes"].numpy()
        assert boxes.min() >= 0 and boxes.max() <= 1          # normalised to the image given
    count = int(min(small["num_detections"][0], large["num_detections"][0], 5))
    assert count > 0
    assert np.allclose(small["detection_boxes"][0][:count], large["detection_boxes"][0][:count], atol=0.05)

    first_params = (model_dir / "params.yaml").read_text()
    code, out, err = trainer("train", "--dataset", converted, "--model-dir", model_dir_arg, "--max-steps", 8,
                             "--train-steps-per-eval", 8, *SMALL, "--params-override", EVERY_DETECTION, **here)
    assert code == 0, err
    assert "resuming from the checkpoint at step 6" in err and progress_steps(err)[-1] == 8
    assert json.loads((model_dir / "metrics.json").read_text())["step"] == 8
    assert (model_dir / "params.yaml").read_text() == first_params
    assert (model_dir / "params.resumed-at-6.yaml").exists()
    assert [json.loads(line)["step"] for line in (model_dir / "metrics_history.jsonl").read_text().splitlines()] \
        == [3, 6, 8]
    code, _, err = trainer("train", "--dataset", converted, "--model-dir", model_dir_arg, "--max-steps", 8, *SMALL,
                           **here)
    assert code == 2 and "already trained to step 8" in err

    # a new training starts from this one's whole network
    code, out, err = trainer("train", "--dataset", converted, "--model-dir", "runs/m2", "--max-steps", 1,
                             "--train-steps-per-eval", 1, "--init-from", model_dir_arg, *SMALL, **here)
    assert code == 0, err
    assert "starting from the whole network of %s (step 8)" % model_dir in err


def test_init_from_restores_the_whole_network_and_a_new_head_for_other_classes(converted, tmp_path):
    import tensorflow as tf

    from trainer import commands, config, engine
    from trainer import dataset as dataset_lib
    data = dataset_lib.load(str(converted))
    hp = dict(config.HYPERPARAMETERS, fpn_type="fpn", num_eval_images=2)
    values = config.overrides(data, hp, "mobilenet", [128, 128])
    small = config.parse_override(SMALL[-1])
    params = config.experiment([values, small])
    from official.core import task_factory
    from official.vision import registry_imports  # noqa: F401
    task = task_factory.get_task(params.task)
    trained = task.build_model()
    source = tmp_path / "trained"
    source.mkdir()
    engine.save_params(params, str(source))
    tf.train.Checkpoint(model=trained).save(str(source / "ckpt"))
    fresh = task.build_model()
    assert not np.allclose(fresh.backbone.weights[0].numpy(), trained.backbone.weights[0].numpy())
    initialize, what = commands.initializer_from(str(source), params)
    initialize(fresh)
    for part in ("backbone", "decoder", "head"):
        for mine, theirs in zip(getattr(fresh, part).weights, getattr(trained, part).weights):
            assert np.array_equal(mine.numpy(), theirs.numpy()), part
    assert "the whole network of" in what and "new head" not in what

    other = config.experiment([values, small, {"task": {"model": {"num_classes": 9}}}])
    initialize, what = commands.initializer_from(str(source), other)
    stranger = task_factory.get_task(other.task).build_model()
    initialize(stranger)
    assert "a new head: it knows other classes" in what
    assert np.array_equal(stranger.backbone.weights[0].numpy(), trained.backbone.weights[0].numpy())


def test_a_backbone_checkpoint_given_is_really_restored(converted, tmp_path):
    import tensorflow as tf

    from trainer import config
    from trainer import dataset as dataset_lib
    data = dataset_lib.load(str(converted))
    hp = dict(config.HYPERPARAMETERS, fpn_type="fpn", num_eval_images=2)
    small = config.parse_override(SMALL[-1])
    from official.core import task_factory
    from official.vision import registry_imports  # noqa: F401
    plain = config.experiment([config.overrides(data, hp, "mobilenet", [128, 128]), small])
    pretrained = task_factory.get_task(plain.task).build_model()
    prefix = tf.train.Checkpoint(backbone=pretrained.backbone).save(str(tmp_path / "backbone" / "ckpt"))
    resolved = config.resolve_init_checkpoint(prefix, "mobilenet")
    params = config.experiment([config.overrides(data, hp, "mobilenet", [128, 128], resolved), small])
    task = task_factory.get_task(params.task)
    model = task.build_model()
    assert not np.allclose(model.backbone.weights[0].numpy(), pretrained.backbone.weights[0].numpy())
    task.initialize(model)
    for mine, theirs in zip(model.backbone.weights, pretrained.backbone.weights):
        assert np.array_equal(mine.numpy(), theirs.numpy())


def test_init_checkpoint_resolution_offline(tmp_path):
    from trainer import config
    assert config.resolve_init_checkpoint("imagenet", "resnet-50") == \
        "gs://cloud-tpu-checkpoints/vision-2.0/resnet50_imagenet/ckpt-28080"
    assert config.resolve_init_checkpoint(None, "resnet-50") is None
    assert config.resolve_init_checkpoint("none", "mobilenet") is None
    with pytest.raises(config.ConfigError, match="no ImageNet checkpoint for --backbone mobilenet"):
        config.resolve_init_checkpoint("imagenet", "mobilenet")
    with pytest.raises(config.ConfigError, match="no such checkpoint"):
        config.resolve_init_checkpoint(str(tmp_path / "nothing"), "resnet-50")
    assert config.resolve_init_checkpoint("gs://b/ckpt-1", "resnet-18") == "gs://b/ckpt-1"


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
    assert "Likely cause: libcuda.so.1 (the NVIDIA driver) cannot be loaded" in lines[0]
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


def test_the_configuration_holds_the_seeds_numbers(converted, tmp_path):
    """Each number of trainer/config.py, checked by value."""
    from trainer import config
    from trainer import dataset as dataset_lib
    data = dataset_lib.load(str(converted))
    hp = dict(config.HYPERPARAMETERS, max_steps=1000, train_steps_per_eval=160, num_eval_images=3,
              initial_learning_rate=0.004)
    values = config.overrides(data, hp, "resnet-50", config.image_size("", (960, 1280)))
    params = config.experiment([values])
    stepwise = params.trainer.optimizer_config.learning_rate.stepwise
    assert list(stepwise.boundaries) == [750, 900]
    assert np.allclose(stepwise.values, [0.004, 0.0004, 0.00004])     # decays, by 10 then 100
    warmup = params.trainer.optimizer_config.warmup.linear
    assert warmup.warmup_steps == 500 and warmup.warmup_learning_rate == 0.01
    assert params.trainer.validation_steps == 1          # ceil(3 / 3): the eval batch is min(8, 3)
    twenty = dataset_lib.Dataset(data.path, data.num_classes, data.names, {"train": 50, "eval": 20})
    assert config.experiment([config.overrides(twenty, dict(hp, num_eval_images=20), "resnet-50", [128, 128])]) \
        .trainer.validation_steps == 3                  # ceil(20 / 8): the last partial batch is scored
    assert params.trainer.validation_interval == 160 == params.trainer.checkpoint_interval
    assert params.trainer.steps_per_loop == 80 and params.trainer.summary_interval == 80
    assert params.trainer.train_steps == 1000 and params.trainer.max_to_keep == 3
    assert params.task.model.norm_activation.norm_momentum == 0.9
    assert params.task.train_data.parser.aug_rand_hflip is True
    assert (params.task.train_data.parser.aug_scale_min, params.task.train_data.parser.aug_scale_max) == (0.8, 1.2)
    assert list(params.task.model.input_size) == [1024, 1280, 3]      # rounded up to multiples of 128
    assert config.image_size("100,129", None) == [128, 256] and config.image_size("128,128", None) == [128, 128]
    assert params.task.model.num_classes == data.num_classes + 1
    assert params.task.init_checkpoint is None and params.runtime.mixed_precision_dtype == "float32"
    assert [config.steps_per_loop(n) for n in (150, 160, 2000, 101, 7)] == [75, 80, 100, 1, 7]

    with pytest.raises(config.ConfigError, match="does not fit"):
        config.experiment([values, {"task": {"model": {"no_such_setting": 1}}}])
    override = tmp_path / "head.yaml"
    override.write_text("task:\n  model:\n    head: {num_filters: 64}\n")
    assert config.parse_override(str(override)) == {"task": {"model": {"head": {"num_filters": 64}}}}
    assert config.experiment([values, config.parse_override(str(override))]).task.model.head.num_filters == 64
    with pytest.raises(config.ConfigError, match="missing.yaml: No such file"):
        config.parse_override(str(tmp_path / "missing.yaml"))


def test_damaged_outputs_are_named_before_a_model_is_built(converted, tmp_path):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(converted, broken)
    for shard in (broken / "eval").iterdir():
        shard.unlink()
    code, _, err = trainer("train", "--dataset", broken, "--model-dir", tmp_path / "m", "--max-steps", 2, *SMALL)
    assert code == 2 and "eval split holds" in err and "matches no file" in err and "Traceback" not in err
    assert not (tmp_path / "m" / "params.yaml").exists()

    shutil.rmtree(broken)
    shutil.copytree(converted, broken)
    shard = sorted((broken / "train").iterdir(), key=lambda p: -p.stat().st_size)[0]
    shard.write_bytes(shard.read_bytes()[:shard.stat().st_size // 2])
    code, _, err = trainer("train", "--dataset", broken, "--model-dir", tmp_path / "m2", "--max-steps", 2,
                           "--train-steps-per-eval", 2, *SMALL)
    assert code == 2 and "is damaged" in err and shard.name in err and "Traceback" not in err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_a_trainers_first_seconds_ends_it_with_130_and_leaves_no_log_behind(converted, tmp_path, signum):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    command = [sys.executable, "-m", "trainer", "train", "--dataset", str(converted), "--model-dir",
               str(tmp_path / "m"), "--max-steps", "1000", *SMALL]
    for wait_for_log in (False, True):          # during the imports, then once its log has begun
        began = time.monotonic()
        process = subprocess.Popen(command, env=dict(os.environ, TMPDIR=str(scratch)), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        while wait_for_log and not list(scratch.glob("synthdet-*.log")) and time.monotonic() - began < 120:
            time.sleep(0.01)
        if not wait_for_log:
            time.sleep(0.5)
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130 and "interrupted" in err and "Aborted!" not in err, err
        assert "Traceback" not in err, err
        assert not list(scratch.glob("synthdet-*.log")), "the command's temporary log was left behind"


@pytest.fixture
def small_disk(tmp_path):
    """A 96 MB tmpfs at TMP/disk, for as long as the test runs (mounting needs root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(disk)],
                                           capture_output=True).returncode:
        pytest.skip("a full disk is made with a small tmpfs, which needs root to mount")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_at_a_checkpoint_ends_in_one_line_and_leaves_the_newest_whole_one(converted, small_disk):
    import tensorflow as tf
    os.symlink(converted, small_disk / "data")
    command = ["train", "--dataset", "data", "--model-dir", "m", "--train-steps-per-eval", 2, *SMALL]
    code, out, err = trainer(*command, "--max-steps", 2, cwd=small_disk)
    assert code == 0, err
    stats = os.statvfs(small_disk)
    with open(small_disk / "filler", "wb") as f:          # all but 64 KB: less than a checkpoint
        f.write(b"\0" * (stats.f_bavail * stats.f_frsize - 64 * 1024))
    code, out, err = trainer(*command, "--max-steps", 4, cwd=small_disk)
    assert code != 0 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert "no space left on the disk of %s" % (small_disk / "m") in last, err
    assert "newest whole checkpoint, of step 2, is kept" in last, err
    names = os.listdir(small_disk / "m")
    assert not [n for n in names if n.startswith("ckpt-4") or n.endswith("_temp")], names
    latest = tf.train.latest_checkpoint(str(small_disk / "m"))
    assert latest.endswith("ckpt-2")
    reader = tf.train.load_checkpoint(latest)         # whole: every variable reads back (resuming is tested above)
    assert all(reader.get_tensor(name) is not None for name in reader.get_variable_to_shape_map())
