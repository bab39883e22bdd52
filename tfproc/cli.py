"""``python main.py``: convert a Unity Simulation run or Perception dataset into TFRecords."""
import argparse
import json
import logging
import os
import sys
import threading
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions,
                                                  StandardOptions, TestOptions)

from tfproc import fsutil, layout, pipeline, split
from tfproc import summary as summary_lib

DESCRIPTION = """\
Convert a Unity Simulation run (its urn:app_params:* folders), a Perception dataset or a SOLO
dataset into sharded train/eval TFRecords for the TF Object Detection API, with a label map and
a summary. Works on local folders and gs:// alike."""

EPILOG = """\
Any option not listed above goes to Apache Beam's PipelineOptions, e.g. --runner DataflowRunner
--project P --region R --temp_location gs://.../tmp --num_workers 8 --max_num_workers 64, or
--direct_num_workers 2 for a local run. Without --runner the run is local (Beam's DirectRunner)
and uses every core.

Output (under --output):
  train/train-NNNNN-of-NNNNN.tfrecord, eval/eval-NNNNN-of-NNNNN.tfrecord
  label_map.pbtxt   the class ids and names (StringIntLabelMap)
  summary.json      counts per split and class, num_classes for training, skipped items

Exit status: 0 on success, 1 if the run failed, 2 for a bad argument or source."""

log = logging.getLogger("tfproc")


class UsageError(Exception):
    """A bad argument or source: one line, no traceback, exit 2."""


def parse_args(argv):
    parser = new_parser("main.py", DESCRIPTION)
    parser.add_argument("--source", required=True,
                        help="the urn:run_executions:<id> folder of a run, or a Perception/SOLO "
                             "dataset folder (local path or gs://)")
    add_output_arguments(parser)
    return parser.parse_known_args(argv)


def new_parser(prog, description):
    return argparse.ArgumentParser(prog=prog, description=description, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_output_arguments(parser):
    """The options every conversion command shares."""
    parser.add_argument("--eval-pct", required=True, type=float, metavar="PCT",
                        help="percent of frames for the eval split, 0-100 (the seed uses 20)")
    parser.add_argument("--output", help="where to write (default: SOURCE/output)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the TFRecords, label map and summary of an earlier run in OUTPUT")
    parser.add_argument("--strict", action="store_true",
                        help="fail (writing nothing) if any frame, image or annotation file is bad, "
                             "instead of skipping and reporting it")
    parser.add_argument("--shard-size-mb", type=float, default=200, metavar="MB",
                        help="largest size of a shard; shards come out between half this and this "
                             "(default: 200)")


def main(argv=None):
    args, beam_args = parse_args(sys.argv[1:] if argv is None else argv)
    return guarded(lambda: run(args, beam_args), beam_args)


def find_run_datasets(source, output):
    found = layout.find_datasets(source, exclude=output)
    what = ("a Perception dataset (looked for Dataset*/annotation_definitions.json and SOLO "
            "sequence.*/step*.frame_data.json); pass the urn:run_executions:<id> folder of a run or "
            "a dataset folder")
    return found, what


def guarded(command, beam_args):
    """Run a conversion command: one line for errors, exit 2 for bad input, 1 for a failed run."""
    _configure_logging(beam_args)
    try:
        return command()
    except UsageError as error:
        print("error: %s" % error, file=sys.stderr)
        return 2
    except pipeline.ConversionFailed as error:
        print("error: %s" % error, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; nothing was written to the output", file=sys.stderr)
        return 130


def run(args, beam_args, find=find_run_datasets):
    """Convert what ``find(source, output)`` finds; it returns ``(Discovery, what it looks for)``."""
    started = time.time()
    options = _pipeline_options(beam_args)
    source = args.source.rstrip("/\\")
    output = (args.output or fsutil.join(source, "output")).rstrip("/\\")
    _check_arguments(args, options, source, output)

    print("Listing %s ..." % source, file=sys.stderr)
    found, what = find(source, output)
    if not found.files_listed:
        raise UsageError("source %s does not exist or is empty; it should hold %s" % (source, what))
    if not found.datasets:
        raise UsageError("no dataset under %s (%d files): it should hold %s"
                         % (source, found.files_listed, what))
    annotation_files = sum(len(d.annotation_files) for d in found.datasets)
    print("Found %d dataset(s) with %d annotation file(s) and %d image file(s)%s." % (
        len(found.datasets), annotation_files, sum(len(d.images) for d in found.datasets),
        "; left out %d earlier attempt(s)" % len(found.superseded) if found.superseded else ""),
        file=sys.stderr)

    settings = pipeline.Settings(
        source=source, output=output, staging=pipeline.new_staging(output),
        eval_pct=args.eval_pct, shard_bytes=int(args.shard_size_mb * 1024 * 1024),
        strict=args.strict, started=started, superseded=tuple(found.superseded))
    output_existed = fsutil.is_remote(output) or bool(fsutil.list_tree(output)) or _is_dir(output)
    try:
        for split_name in (split.TRAIN, split.EVAL):
            fsutil.makedirs(fsutil.join(settings.staging, split_name))
        pipeline.write_manifest(settings, found.datasets)
        _run_pipeline(settings, options)
        if options.view_as(TestOptions).dry_run:
            fsutil.delete_tree(settings.staging)
            print("Dry run: the %s job was built and not run; nothing was written." % _runner(options))
            return 0
    except BaseException as error:
        try:
            _report_failure(settings, error)
        finally:
            fsutil.delete_tree(settings.staging)
            if not output_existed:
                fsutil.delete_tree(output)
        raise
    with_summary = json.loads(fsutil.read_bytes(fsutil.join(output, pipeline.SUMMARY)))
    print(summary_lib.human(with_summary))
    return 0


def _configure_logging(beam_args):
    """Beam's job messages matter on Dataflow; locally they are noise (and tracebacks of bad items
    that the summary names anyway)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    remote = any("DataflowRunner" in arg for arg in beam_args)
    logging.getLogger("apache_beam").setLevel(logging.INFO if remote else logging.CRITICAL)
    logging.getLogger("tfproc").setLevel(logging.WARNING if remote else logging.ERROR)


def _runner(options):
    return options.view_as(StandardOptions).runner or "DirectRunner"


def _is_dir(path):
    return not fsutil.is_remote(path) and os.path.isdir(path)


def _pipeline_options(beam_args):
    """Beam's options; a local run uses every core, in threads: the heavy work (reading, hashing,
    writing) releases the GIL, and threads start faster than worker processes (see benchmarks/)."""
    options = PipelineOptions(beam_args)
    if options.view_as(StandardOptions).runner is None:
        direct = options.view_as(DirectOptions)
        if "--direct_num_workers" not in " ".join(beam_args):
            direct.direct_num_workers = 0           # every core
        if "--direct_running_mode" not in " ".join(beam_args):
            direct.direct_running_mode = "multi_threading"
    return options


def _check_arguments(args, options, source, output):
    if not 0 <= args.eval_pct <= 100:
        raise UsageError("--eval-pct must be between 0 and 100, got %g" % args.eval_pct)
    if args.shard_size_mb <= 0:
        raise UsageError("--shard-size-mb must be positive, got %g" % args.shard_size_mb)
    runner = _runner(options)
    if "Dataflow" in runner:
        for name, path in (("--source", source), ("--output", output)):
            if not path.startswith("gs://"):
                raise UsageError("%s must be a gs:// path with --runner %s (workers cannot read "
                                 "this machine's files): %s" % (name, runner, path))
    existing = [rel for rel in fsutil.list_tree(output)
                if rel.endswith(".tfrecord") or rel in (pipeline.SUMMARY, pipeline.LABEL_MAP)]
    if existing and not args.overwrite:
        raise UsageError("%s already holds the output of an earlier run (%s); pass --overwrite to "
                         "replace it, or --output to write elsewhere" % (output, existing[0]))


def _run_pipeline(settings, options):
    progress = Progress(settings)
    progress.start()
    try:
        p = beam.Pipeline(options=options)
        pipeline.build_pipeline(p, settings)
        result = p.run()
        result.wait_until_finish()   # raises if the job failed, on every runner
        return result
    finally:
        progress.stop()


def _report_failure(settings, error):
    """Turn a failed pipeline into the reason it failed, and the bad items if any were found."""
    if isinstance(error, KeyboardInterrupt):
        return
    message = str(error)
    marker = "ConversionFailed: "
    if isinstance(error, pipeline.ConversionFailed) or marker in message:
        reason = message.split(marker, 1)[-1].strip().splitlines()[0].split(" [while running")[0]
        try:
            staged = json.loads(fsutil.read_bytes(fsutil.join(settings.staging, pipeline.SUMMARY)))
            for example in staged["skipped_examples"][:10]:
                print("  %s: %s %s" % (example["item"], example["reason"], example["detail"]),
                      file=sys.stderr)
        except (OSError, ValueError, KeyError):
            pass
        raise pipeline.ConversionFailed(reason) from None
    lines = [line for line in message.strip().splitlines() if line.strip()]
    raise pipeline.ConversionFailed(
        "the pipeline failed: %s" % (lines[-1] if lines else type(error).__name__)) from error


class Progress:
    """Prints a progress line while the pipeline runs, from what has reached the staging folder."""

    def __init__(self, settings):
        self.settings = settings
        self.every = 10.0 if fsutil.is_remote(settings.staging) else 2.0   # a remote listing costs a request
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.tty = sys.stderr.isatty()

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopped.set()
        self.thread.join()
        if self.tty:
            sys.stderr.write("\n")

    def _loop(self):
        last_line = None
        while not self.stopped.wait(self.every):
            try:
                line = self._line()
            except Exception:       # the staging folder changes under us; try again next tick
                continue
            if line != last_line:
                sys.stderr.write(("\r%s" if self.tty else "%s\n") % line)
                sys.stderr.flush()
                last_line = line

    def _line(self):
        elapsed = time.time() - self.settings.started
        files = fsutil.list_tree(self.settings.staging)
        if pipeline.PLAN not in files:
            return "[%4.0fs] reading annotations ..." % elapsed
        plan = json.loads(fsutil.read_bytes(fsutil.join(self.settings.staging, pipeline.PLAN)))
        done = sum(1 for rel in files if rel.endswith(".tfrecord"))
        written = sum(size for rel, size in files.items() if ".tfrecord" in rel)
        return "[%4.0fs] %d frames: %d/%d shards written, %.0f MB" % (
            elapsed, sum(plan["frames"].values()), done, sum(plan["shards"].values()), written / 2 ** 20)
