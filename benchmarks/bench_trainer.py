"""The input side of training, and training steps on this machine's CPU.

    .venv/bin/python benchmarks/bench_trainer.py [--frames 400] [--size 960,1280] [--workdir DIR]

Makes a run of ``--frames`` noisy PNG frames of ``--size`` (height,width), converts it, then measures
in one process:
- the floor: records/s that a bare ``tf.data.TFRecordDataset`` reads from the shards (no decoding);
- Model Garden's RetinaNet input pipeline as training uses it (its TfExampleDecoder, then its
  parser: PNG decode, flip and scale augmentation, resize and pad to the input size, anchor
  labels), in images/s at batch 8 and input 640x640, with tf.data's autotuning;
- training steps/s of the small configuration of the tests (MobileNetV2 at 0.35 width, 128x128,
  batch 2), after a warm-up.
So a user can size the CPU of a GPU machine: the GPU waits whenever the parser gives fewer images
per second than the model consumes. Figures only; nothing is asserted.
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tfproc import sample  # noqa: E402


def make(workdir, frames, height, width):
    run = os.path.join(workdir, "run")
    out = os.path.join(workdir, "out")
    if not os.path.exists(out):
        rng = random.Random(0)
        pool = [sample.noisy_png(width, height, rng) for _ in range(16)]
        made = instance = 0
        while made < frames:
            count = min(50, frames - made)
            root = os.path.join(run, "urn:app_params:AP0", "instance:%d" % instance, "attempt:0")
            sample.write_dataset(root, count, width, height, rng, captures_per_file=150, pngs=pool)
            made, instance = made + count, instance + 1
        subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "--source", run, "--eval-pct", "10",
                        "--output", out], check=True, capture_output=True)
    return out


def floor(out):
    import tensorflow as tf
    files = tf.io.gfile.glob(out + "/train/*.tfrecord")
    started, count = time.perf_counter(), 0
    for _ in tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE):
        count += 1
    return count / (time.perf_counter() - started), count


def input_pipeline(out, batches):
    from official.core import task_factory
    from trainer import config, dataset
    data = dataset.load(out)
    hp = dict(config.HYPERPARAMETERS, train_batch_size=8, num_eval_images=0)
    params = config.experiment([config.overrides(data, hp, "resnet-50", [640, 640])])
    task = task_factory.get_task(params.task)
    pipeline = task.build_inputs(params.task.train_data)
    iterator = iter(pipeline)
    next(iterator)                      # the shuffle buffer fills, the graph is traced
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * 8 / (time.perf_counter() - started)


def training_steps(out, steps):
    from trainer import config, dataset, engine
    data = dataset.load(out)
    hp = dict(config.HYPERPARAMETERS, train_batch_size=2, num_eval_images=0, max_steps=steps + 10,
              train_steps_per_eval=steps + 10, fpn_type="fpn")
    small = {"task": {"model": {"head": {"num_filters": 32, "num_convs": 1}, "decoder": {"fpn": {"num_filters": 32}},
                                "backbone": {"mobilenet": {"filter_size_scale": 0.35}}}},
             "trainer": {"steps_per_loop": 5}}
    params = config.experiment([config.overrides(data, hp, "mobilenet", [128, 128]), small])
    model_dir = tempfile.mkdtemp(prefix="bench-train-")
    times = []
    progress = engine.Progress(params.trainer.train_steps, 0, 5)

    def tick(logs):
        times.append(time.perf_counter())
        progress(logs)

    try:
        engine.run(params, model_dir, "train", engine.strategy_for("one_device"), on_train=tick)
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)
    measured = times[2:]                # the first loops trace the graph
    return (len(measured) - 1) * 5 / (measured[-1] - measured[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--size", default="960,1280", help="frame height,width")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workdir", help="where to make the data (default: a temporary folder, removed)")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split(","))
    workdir = args.workdir or tempfile.mkdtemp(prefix="tfproc-train-bench-")
    try:
        out = make(workdir, args.frames, height, width)
        rate, count = floor(out)
        print("floor: tf.data reads %.0f records/s from %d train records (%dx%d PNG)" % (rate, count, width, height))
        print("Model Garden decoder + parser (batch 8, input 640x640): %.1f images/s"
              % input_pipeline(out, args.batches))
        print("training, small configuration (MobileNetV2 x0.35, 128x128, batch 2): %.2f steps/s"
              % training_steps(out, args.steps))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
