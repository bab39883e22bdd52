"""One large SOLO dataset: does its parse fan out, and is memory bounded?

    .venv/bin/python benchmarks/bench_solo.py [--frames 20000] [--modes default,mp2] [--workdir DIR]

Makes one SOLO dataset (a single ``sequence.*`` tree, 10 steps a sequence) of ``--frames`` small
64x48 PNG frames, then converts it with ``main.py`` once per mode:
- ``default``: the local default (one Beam worker in memory, the tool's own thread pools);
- ``mpN``: ``--direct_running_mode multi_processing --direct_num_workers N``.
Each run starts from a fresh copy of the dataset (so its pages are cold, as right after it was
written) unless ``--warm``. It prints the parse time (until the plan of shards is written, i.e. all
annotation files are parsed and counted), the write time (the rest), the peak RSS of the largest
process, and the number of parse chunks. Figures only; nothing is asserted.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from tfproc import layout, sample  # noqa: E402


def make(dataset, frames):
    steps = 10
    sample.make_solo(dataset, sequences=-(-frames // steps), steps=steps, cameras=1, width=64, height=48)


def drop_caches():
    """Ask the kernel to drop clean pages (needs root and a writable /proc; else a no-op)."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def run(dataset, extra):
    """(parse seconds, write seconds, peak RSS MB of the largest process, exit code)."""
    out = dataset + "-out"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", _MEASURE, sys.executable, os.path.join(ROOT, "main.py"), "--source", dataset,
         "--eval-pct", "20", "--output", out, *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    parsed = None
    while process.poll() is None:
        if parsed is None and glob.glob(os.path.join(out, ".staging-*", "plan.json")):
            parsed = time.perf_counter() - started
        time.sleep(0.05)
    total = time.perf_counter() - started
    reported = process.stdout.read().split()
    peak = int(reported[-2]) / 1024 if len(reported) >= 2 else float("nan")
    parsed = parsed if parsed is not None else total
    code = int(reported[-1]) if reported else process.returncode
    return parsed, total - parsed, peak, code


# Runs main.py and prints its peak RSS (largest process, KB) and exit code.
_MEASURE = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
            "stderr=subprocess.DEVNULL).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)")


def mode_args(mode):
    if mode == "default":
        return []
    if mode.startswith("mp"):
        return ["--direct_running_mode=multi_processing", "--direct_num_workers=%d" % int(mode[2:])]
    if mode.startswith("mt"):
        return ["--direct_running_mode=multi_threading", "--direct_num_workers=%d" % int(mode[2:])]
    raise SystemExit("unknown mode %s (default, mpN, mtN)" % mode)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--modes", default="default,mp2")
    parser.add_argument("--warm", action="store_true", help="reuse one copy (warm page cache)")
    parser.add_argument("--workdir", help="where to make the dataset (default: a temporary folder, removed)")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="tfproc-solo-")
    master = os.path.join(workdir, "solo")
    try:
        if not os.path.exists(master):
            started = time.perf_counter()
            make(master, args.frames)
            print("made %d frames in %.0fs" % (args.frames, time.perf_counter() - started))
        dataset = layout.find_datasets(master).datasets[0]
        files, images = layout.list_dataset(dataset)
        print("%d annotation files -> %d parse chunks" % (len(files), len(layout.chunks(dataset, files, images))))
        print("%-8s | %8s | %8s | %9s | %s" % ("mode", "parse s", "write s", "peak MB", "exit"))
        for mode in args.modes.split(","):
            target = master
            if not args.warm:
                target = os.path.join(workdir, "copy")
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(master, target)
                drop_caches()
            parse_s, write_s, peak, code = run(target, mode_args(mode))
            print("%-8s | %8.1f | %8.1f | %9.0f | %d" % (mode, parse_s, write_s, peak, code))
            sys.stdout.flush()
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print("peak MB: the largest RSS among the run's processes.")


if __name__ == "__main__":
    main()
