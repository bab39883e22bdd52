"""What the launching machine pays to find the datasets of a very large run.

    .venv/bin/python benchmarks/bench_listing.py [--files 1000000]

A synthetic listing (no disk, no network) of a run laid out as Unity Simulation writes it:
instances of 5,000 files each (``attempt:0`` and ``attempt:1``, a Dataset folder with its
definitions and captures files, RGB frames). It is fed, as a stream, to
- ``layout.find_datasets`` and the manifest lines the launcher writes (what main.py does now), and
- the baseline: the whole listing held as ``{path: size}`` and a manifest naming every image and
  annotation file of each dataset (what main.py did before).
Each is run in a fresh process; it prints the time and the peak memory (tracemalloc's peak of
Python allocations, and the process's peak RSS). Figures only; nothing is asserted.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

FILES_PER_ATTEMPT = 2500


def synthetic_listing(files):
    """Yield ``(relative path, size)`` of a run of about ``files`` files."""
    made = instance = 0
    while made < files:
        for attempt in (0, 1):
            base = "urn:app_params:AP%d/instance:%d/attempt:%d" % (instance % 8, instance, attempt)
            dataset, rgb = "Dataset%08x" % instance, "RGB%08x" % instance
            yield "%s/%s/annotation_definitions.json" % (base, dataset), 4000
            captures = FILES_PER_ATTEMPT // 150
            for i in range(captures):
                yield "%s/%s/captures_%03d.json" % (base, dataset, i), 400000
            for frame in range(FILES_PER_ATTEMPT - captures - 1):
                yield "%s/%s/rgb_%d.png" % (base, rgb, frame + 2), 1500000
            made += FILES_PER_ATTEMPT
        instance += 1


def streamed(files):
    from tfproc import fsutil, layout
    fsutil.iter_tree = lambda root, sizes=True: synthetic_listing(files)
    found = layout.find_datasets("gs://bucket/run")
    manifest = "".join(json.dumps(d.to_json(), sort_keys=True) + "\n" for d in found.datasets)
    return len(found.datasets), len(manifest)


def baseline(files):
    """The former way: the listing as a dict, every dataset's files in its manifest line."""
    listing = dict(synthetic_listing(files))
    datasets = {}
    for path, size in listing.items():
        parts = path.split("/")
        root = "/".join(parts[:3])
        entry = datasets.setdefault(root, {"root": "gs://bucket/run/" + root, "annotation_files": [], "images": {}})
        rel = "/".join(parts[3:])
        if rel.endswith(".png"):
            entry["images"][rel] = size
        elif "captures_" in rel:
            entry["annotation_files"].append(rel)
    last = {}
    for root in datasets:
        instance = root.rsplit("/", 1)[0]
        last[instance] = max(last.get(instance, root), root)
    kept = [datasets[r] for r in sorted(set(last.values()))]
    manifest = "".join(json.dumps(d, sort_keys=True) + "\n" for d in kept)
    return len(kept), len(manifest)


def measure(which, files):
    from tfproc import layout  # noqa: F401  (Beam's import is not the listing's cost)
    tracemalloc.start()
    started = time.perf_counter()
    datasets, manifest_bytes = {"streamed": streamed, "baseline": baseline}[which](files)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"which": which, "datasets": datasets, "manifest_mb": manifest_bytes / 2 ** 20,
                      "seconds": elapsed, "traced_peak_mb": peak / 2 ** 20, "rss_peak_mb": rss}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000000)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        measure(args.one, args.files)
        return
    print("%-9s | %8s | %11s | %8s | %16s | %12s" % ("", "datasets", "manifest MB", "seconds",
                                                     "Python peak MB", "peak RSS MB"))
    for which in ("baseline", "streamed"):
        out = subprocess.run([sys.executable, __file__, "--files", str(args.files), "--one", which],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print("%-9s | %8d | %11.2f | %8.1f | %16.0f | %12.0f" % (
            which, r["datasets"], r["manifest_mb"], r["seconds"], r["traced_peak_mb"], r["rss_peak_mb"]))
    print("baseline: the listing held whole and every file named in the manifest (the former way); "
          "streamed: layout.find_datasets as main.py runs it now (the files are listed per dataset "
          "by the pipeline's workers).")


if __name__ == "__main__":
    main()
