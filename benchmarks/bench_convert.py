"""Conversion speed and memory against the floor, at two data sizes.

    .venv/bin/python benchmarks/bench_convert.py [--frames 400] [--scales 1,4] [--workdir DIR]

For each scale it makes a run of ``frames * scale`` noisy 1280x960 PNG frames (about 1.5 MB each;
a pool of distinct images is reused across frames so that making the data stays quick), then
- the floor: in this process, a plain loop that reads each image and writes it, wrapped in a
  minimal tf.train.Example, to one TFRecord with TensorFlow's own writer (one core);
- the conversion: ``python main.py --source RUN --eval-pct 20`` with the default local settings,
  as a user runs it; its peak memory is that of its largest process (getrusage of the children).
The page cache is warmed first so both read from memory. Figures are printed, nothing asserted.
"""
import argparse
import glob
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from tfproc import sample  # noqa: E402

POOL = 24


def make_run(run_dir, frames, rng):
    """Instances of 50 frames over 4 app-params, images taken in turn from a pool of noisy PNGs."""
    pool = [sample.noisy_png(1280, 960, rng) for _ in range(POOL)]
    made = instance = 0
    while made < frames:
        count = min(50, frames - made)
        root = os.path.join(run_dir, "urn:app_params:AP%d" % (instance % 4), "instance:%d" % instance,
                            "attempt:0")
        rotated = pool[made % POOL:] + pool[:made % POOL]
        sample.write_dataset(root, count, 1280, 960, rng, captures_per_file=150, pngs=rotated)
        made += count
        instance += 1


def images_of(run_dir):
    return sorted(glob.glob(os.path.join(run_dir, "**", "RGB*", "*.png"), recursive=True))


def floor(paths, out_path):
    import tensorflow as tf
    started = time.perf_counter()
    total = 0
    with tf.io.TFRecordWriter(out_path) as writer:
        for path in paths:
            with open(path, "rb") as f:
                data = f.read()
            total += len(data)
            example = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))}))
            writer.write(example.SerializeToString())
    return time.perf_counter() - started, total


_MEASURE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
            "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def convert(run_dir, extra, checkout=ROOT):
    """Wall time and peak RSS (MB) of the largest process of one conversion."""
    shutil.rmtree(os.path.join(run_dir, "output"), ignore_errors=True)
    os.sync()   # the previous run's unwritten pages are not written during this one
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, os.path.join(checkout, "main.py"),
                           "--source", run_dir, "--eval-pct", "20", *extra],
                          check=True, capture_output=True, text=True)
    return time.perf_counter() - started, int(done.stdout.split()[-1]) / 1024


def warm(paths):
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--scales", default="1,4")
    parser.add_argument("--workdir", help="where to make the runs (default: a temporary folder, removed)")
    parser.add_argument("--extra", default="", help="extra options for main.py, e.g. '--direct_running_mode=multi_processing'")
    parser.add_argument("--compare", metavar="CHECKOUT",
                        help="another checkout of this project (e.g. a git worktree of an earlier commit): "
                             "its main.py runs in turn with this one, and both medians are printed")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each conversion; the median is shown")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="tfproc-bench-")
    rng = random.Random(0)
    print("%-6s %7s %8s | %-26s | %-34s | %6s" % ("scale", "frames", "MB", "floor (1 process, TF)",
                                                  "conversion (main.py, default)", "ratio"))
    try:
        for scale in [int(s) for s in args.scales.split(",")]:
            run_dir = os.path.join(workdir, "x%d" % scale, "urn:run_executions:bench")
            if not os.path.exists(run_dir):
                make_run(run_dir, args.frames * scale, rng)
            paths = images_of(run_dir)
            warm(paths)
            floor_s, total = floor(paths, os.path.join(workdir, "floor.tfrecord"))
            os.remove(os.path.join(workdir, "floor.tfrecord"))
            times, others, peak_mb = [], [], 0
            for _ in range(args.repeat):
                seconds, peak = convert(run_dir, args.extra.split())
                times.append(seconds)
                peak_mb = max(peak_mb, peak)
                if args.compare:
                    others.append(convert(run_dir, [], args.compare)[0])
            conv_s = statistics.median(times)
            mb = total / 2 ** 20
            if args.compare:
                other_s = statistics.median(others)
                print("       compared: %s %.1f img/s (median of %d), this checkout %.1f img/s: %.2fx"
                      % (args.compare, len(paths) / other_s, len(others), len(paths) / conv_s, other_s / conv_s))
            print("%-6s %7d %8.0f | %6.1f img/s %7.1f MB/s | %6.1f img/s %7.1f MB/s %6s MB | %5.2fx"
                  % ("%dx" % scale, len(paths), mb, len(paths) / floor_s, mb / floor_s,
                     len(paths) / conv_s, mb / conv_s,
                     "%.0f" % peak_mb, floor_s / conv_s))
            sys.stdout.flush()
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print("ratio = floor time / conversion time (> 1: the conversion is faster). Memory: peak RSS of "
          "the conversion's largest process.")


if __name__ == "__main__":
    main()
