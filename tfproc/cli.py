"""``python main.py``: convert a Unity Simulation run or Perception dataset into TFRecords."""
import argparse
import difflib
import json
import logging
import math
import os
import shlex
import signal
import sys
import threading
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions,
                                                  StandardOptions, TestOptions)

from tfproc import fsutil, layout, orphans, pipeline, split
from tfproc import output as output_lib
from tfproc import summary as summary_lib

DESCRIPTION = """\
Convert a Unity Simulation run (its urn:app_params:* folders), a Perception dataset or a SOLO
dataset into sharded train/eval TFRecords for the TF Object Detection API, with a label map and
a summary. Works on local folders and gs:// alike."""

EPILOG = """\
Any option not listed above goes to Apache Beam's PipelineOptions, e.g. --runner DataflowRunner
--project P --region R --temp_location gs://.../tmp --num_workers 8 --max_num_workers 64, or
--direct_running_mode multi_processing --direct_num_workers 2 for a local run. Without --runner
the run is local: one in-memory Beam worker whose reading and hashing run in threads. An option
that neither this tool nor Beam knows is refused.

Output (under --output):
  train/train-NNNNN-of-NNNNN.tfrecord, eval/eval-NNNNN-of-NNNNN.tfrecord
  label_map.pbtxt   the class ids and names (StringIntLabelMap)
  summary.json      counts per split and class, num_classes for training, skipped items

Exit status: 0 on success, 1 if the run failed (or another conversion is writing OUTPUT), 2 for a
bad argument or source, 130 if interrupted. After an interruption OUTPUT holds the old output whole
(or the new one, finished by the next run); the next run needs no cleanup."""

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


def add_output_arguments(parser, eval_pct_help=None):
    """The options every conversion command shares; ``eval_pct_help`` makes --eval-pct optional."""
    parser.add_argument("--eval-pct", required=eval_pct_help is None, type=float, metavar="PCT",
                        help=eval_pct_help or "percent of frames for the eval split, 0-100 (the seed uses 20)")
    parser.add_argument("--output", help="where to write (default: SOURCE/output)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the TFRecords, label map and summary of an earlier run in OUTPUT")
    parser.add_argument("--strict", action="store_true",
                        help="fail (writing nothing) if any frame, image or annotation file is bad, "
                             "instead of skipping and reporting it")
    parser.add_argument("--shard-size-mb", type=float, default=200, metavar="MB",
                        help="largest size of a shard: shards average 3/4 of it (default: 200)")
    parser.add_argument("--break-lock", action="store_true",
                        help="take over a gs:// output whose lock names a Dataflow job that has ended "
                             "without releasing it (check the job first)")
    parser.add_argument("--cancel-on-interrupt", action="store_true",
                        help="with --runner DataflowRunner: Ctrl-C cancels the job (by default the "
                             "job keeps running and finishes the output by itself)")


def main(argv=None):
    args, beam_args = parse_args(sys.argv[1:] if argv is None else argv)
    return guarded(lambda: run(args, beam_args), beam_args)


def convert(source, eval_pct, output=None, overwrite=False, strict=False, shard_size_mb=200.0, beam_args=()):
    """The conversion as a library call: what ``python main.py`` does, without its exit codes.

    Returns the output's summary (a dict). Raises ``UsageError`` (a bad argument or source),
    ``output.OutputUnusable``, ``pipeline.ConversionFailed`` or ``output.OutputBusy``; Ctrl-C stays
    a KeyboardInterrupt.
    """
    args = argparse.Namespace(source=source, eval_pct=eval_pct, output=output, overwrite=overwrite,
                              strict=strict, shard_size_mb=shard_size_mb, break_lock=False,
                              cancel_on_interrupt=False)
    beam_args = list(beam_args)
    _configure_logging(beam_args)
    run(args, beam_args)
    output = (output or fsutil.join(source.rstrip("/\\"), "output")).rstrip("/\\")
    return json.loads(fsutil.read_bytes(fsutil.join(output, pipeline.SUMMARY)))


def find_run_datasets(source, output):
    found = layout.find_datasets(source, exclude=output)
    what = ("a Perception dataset (looked for Dataset*/annotation_definitions.json and SOLO "
            "sequence.*/step*.frame_data.json); pass the urn:run_executions:<id> folder of a run or "
            "a dataset folder")
    return found, what


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM; raised in the main thread whatever Beam does with KeyboardInterrupt."""


def guarded(command, beam_args):
    """Run a conversion command: one line for errors, exit 2 for bad input, 1 for a failed run,
    130 when interrupted."""
    _configure_logging(beam_args)
    previous = {}
    interrupted = threading.Event()

    def interrupt(signum, frame):
        interrupted.set()
        raise Interrupted()

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, interrupt)
    try:
        return command()
    except (Interrupted, KeyboardInterrupt):
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (UsageError, output_lib.OutputUnusable) as error:
        print("error: %s" % error, file=sys.stderr)
        return 2
    except (pipeline.ConversionFailed, output_lib.OutputBusy) as error:
        if interrupted.is_set():    # Beam wraps what a signal raised inside a step
            print("\ninterrupted", file=sys.stderr)
            return 130
        print("error: %s" % error, file=sys.stderr)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run(args, beam_args, find=find_run_datasets):
    """Convert what ``find(source, output)`` finds; it returns ``(Discovery, what it looks for)``."""
    started = time.time()
    _check_beam_options(beam_args)
    options = _pipeline_options(beam_args)
    source = args.source.rstrip("/\\")
    output = (args.output or fsutil.join(source, "output")).rstrip("/\\")
    _check_arguments(args, options, source, output)

    run_id = pipeline.new_run_id()
    created = not fsutil.is_remote(output) and not os.path.exists(output)
    claim = output_lib.claim(output, run_id, break_lock=args.break_lock)
    settings = None
    detached = False
    try:
        for line in output_lib.recover(output, run_id):
            print(line, file=sys.stderr)
        output_lib.check_destinations(output)
        existing = output_lib.existing_output(output)
        if existing and not args.overwrite:
            raise UsageError("%s already holds the output of an earlier run (%s); pass --overwrite to "
                             "replace it, or --output to write elsewhere" % (output, existing[0]))
        print("Listing %s ..." % source, file=sys.stderr)
        found, what = find(source, output)
        if not found.files_listed:
            raise UsageError("source %s does not exist or is empty; it should hold %s" % (source, what))
        if not found.datasets:
            raise UsageError("no dataset under %s (%d files): it should hold %s"
                             % (source, found.files_listed, what))
        print("Found %d dataset(s) in %d files%s." % (
            len(found.datasets), found.files_listed,
            "; left out %d earlier attempt(s)" % len(found.superseded) if found.superseded else ""),
            file=sys.stderr)
        if found.split_names:
            print("Splits as published: %s." % ", ".join(found.split_names), file=sys.stderr)
        elif args.eval_pct is None:
            raise UsageError("pass --eval-pct PCT: %s holds no published split files, so frames are split "
                             "into train and eval by a hash of their name" % source)

        settings = pipeline.Settings(
            source=source, output=output, run_id=run_id,
            eval_pct=args.eval_pct, shard_bytes=int(args.shard_size_mb * 1024 * 1024),
            strict=args.strict, started=started, superseded=tuple(found.superseded),
            skipped=tuple(tuple(item) for item in found.skipped),
            split_names=tuple(found.split_names) or (split.TRAIN, split.EVAL))
        try:
            for split_name in settings.split_names:
                fsutil.makedirs(fsutil.join(settings.staging, split_name))
            pipeline.write_manifest(settings, found.datasets)
        except OSError as error:
            raise output_lib.OutputUnusable("cannot write in --output %s: %s" % (output, error.strerror or error))
        _run_pipeline(settings, options, claim)
        if options.view_as(TestOptions).dry_run:
            fsutil.delete_tree(settings.staging)
            print("Dry run: the %s job was built and not run; nothing was written." % _runner(options))
            return 0
    except BaseException as error:
        detached = _is_detached(error, args)
        if not detached:
            try:
                if settings is not None:
                    _report_failure(settings, error)
            finally:
                _clean_up(output, run_id, created, claim)
        raise
    finally:
        if not detached:
            claim.release()
            if created:
                _remove_if_empty(output)
    with_summary = json.loads(fsutil.read_bytes(fsutil.join(output, pipeline.SUMMARY)))
    print(summary_lib.human(with_summary))
    return 0


def _is_detached(error, args):
    """Whether an interrupted Dataflow job is left running (its staging and lock kept)."""
    job = getattr(error, "dataflow_job", None)
    if not job:
        return False
    if args.cancel_on_interrupt:
        print("\ninterrupted: cancelling Dataflow job %s ..." % job.job_id(), file=sys.stderr)
        job.cancel()
        return False
    print("\ninterrupted: Dataflow job %s keeps running and will write the output by itself; its "
          "staging folder and the output's lock stay in place until it ends. To stop it: gcloud "
          "dataflow jobs cancel %s (or run with --cancel-on-interrupt next time)."
          % (job.job_id(), job.job_id()), file=sys.stderr)
    return True


def _clean_up(output, run_id, created, claim):
    """Remove what this run wrote; nothing else. A run that failed after its commit point keeps its
    staging folder: the next run into this output puts the rest of it in place."""
    staging = output_lib.staging_folder(output, run_id)
    if fsutil.is_file(fsutil.join(staging, output_lib.COMMITTED)):
        print("the new output was committed but not wholly moved into place; the next run into %s "
              "finishes that first" % output, file=sys.stderr)
        return
    fsutil.delete_tree(staging)
    if created:
        output_lib.remove_local_lock(claim)


def _remove_if_empty(path):
    """The output folder this run created, if the run left nothing in it."""
    try:
        os.rmdir(path)
    except OSError:
        pass


def _configure_logging(beam_args):
    """Beam's job messages matter on Dataflow; locally they are noise (and tracebacks of bad items
    that the summary names anyway)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    remote = any("DataflowRunner" in arg for arg in beam_args)
    logging.getLogger("apache_beam").setLevel(logging.INFO if remote else logging.CRITICAL)
    logging.getLogger("tfproc").setLevel(logging.WARNING if remote else logging.ERROR)


def _runner(options):
    return options.view_as(StandardOptions).runner or "DirectRunner"


def _is_local(options):
    return _runner(options) in ("DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")


def _pipeline_options(beam_args):
    """Beam's options. A local run uses Beam's FnApiRunner directly (never Prism, which Beam would
    try to download first) in its in-memory mode: one Beam worker, safe from the races of the
    multi-threaded mode; the heavy work (reading, hashing, writing) runs in the tool's own bounded
    thread pools (see benchmarks/). ``--direct_running_mode multi_processing
    --direct_num_workers N`` spreads the parsing and writing over N processes."""
    options = PipelineOptions(beam_args)
    if _is_local(options):
        direct = options.view_as(DirectOptions)
        if "--direct_running_mode" not in " ".join(beam_args):
            direct.direct_running_mode = "in_memory"
        if "--direct_num_workers" not in " ".join(beam_args):
            direct.direct_num_workers = 1
    return options


def _check_beam_options(beam_args):
    """Refuse options that neither this tool nor Beam knows (a typo would otherwise be ignored)."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser
    parser = _BeamArgumentParser(allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    _, unknown = parser.parse_known_args(beam_args)
    if not unknown:
        return
    known = [opt for action in parser._actions for opt in action.option_strings] + OWN_OPTIONS
    name = unknown[0].split("=", 1)[0]
    close = difflib.get_close_matches(name, known, n=1)
    raise UsageError("unknown option %s%s (see --help; options of Apache Beam are accepted too)"
                     % (name, "; did you mean %s?" % close[0] if close else ""))


OWN_OPTIONS = ["--source", "--eval-pct", "--output", "--overwrite", "--strict", "--shard-size-mb",
               "--cancel-on-interrupt", "--break-lock", "--label-map", "--coco", "--images"]


def _check_arguments(args, options, source, output):
    if args.eval_pct is not None and (not math.isfinite(args.eval_pct) or not 0 <= args.eval_pct <= 100):
        raise UsageError("--eval-pct must be between 0 and 100, got %g" % args.eval_pct)
    if not math.isfinite(args.shard_size_mb) or args.shard_size_mb <= 0 or args.shard_size_mb > 2 ** 20:
        raise UsageError("--shard-size-mb must be a number of megabytes above 0 (e.g. 200), got %s"
                         % args.shard_size_mb)
    runner = _runner(options)
    if "Dataflow" in runner:
        for name, path in (("--source", source), ("--output", output)):
            if not path.startswith("gs://"):
                raise UsageError("%s must be a gs:// path with --runner %s (workers cannot read "
                                 "this machine's files): %s" % (name, runner, path))
    if any(path.startswith("gs://") for path in (source, output)):
        _check_credentials()
    if fsutil.is_file(output):
        raise UsageError("--output %s is a file; it must be a folder (new or of an earlier run)" % output)


def _check_credentials():
    """gs:// needs Google credentials; without them Beam retries silently for minutes."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    try:
        google.auth.default()
    except DefaultCredentialsError:
        raise UsageError("gs:// paths need Google Cloud credentials and none were found: run "
                         "'gcloud auth application-default login', or set "
                         "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file")


def _local_runner(options):
    """Beam's FnApiRunner. In multi_processing mode its worker processes start through
    ``tfproc.beam_worker``, which ends them when this process dies, even by SIGKILL."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.transforms import environments
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode != "multi_processing":
        return FnApiRunner()
    direct.direct_running_mode = "in_memory"    # else Beam replaces the environment below by its own
    logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner").setLevel(logging.ERROR)
    return FnApiRunner(default_environment=environments.SubprocessSDKEnvironment.from_command_string(
        "%s -m tfproc.beam_worker" % shlex.quote(sys.executable)))


def _run_pipeline(settings, options, claim):
    orphans.mark_main()
    progress = Progress(settings, claim)
    progress.start()
    result = None
    try:
        p = beam.Pipeline(runner=_local_runner(options) if _is_local(options) else None, options=options)
        pipeline.build_pipeline(p, settings)
        result = p.run()
        if "Dataflow" in _runner(options) and hasattr(result, "job_id") and result.job_id():
            claim.heartbeat(job=result.job_id())   # the lock names the job, which releases it at its end
        result.wait_until_finish()   # raises if the job failed, on every runner
        return result
    except (Interrupted, KeyboardInterrupt) as error:
        if result is not None and hasattr(result, "job_id") and "Dataflow" in _runner(options):
            error.dataflow_job = result
        raise
    finally:
        progress.stop()


def _report_failure(settings, error):
    """Turn a failed pipeline into the reason it failed, and the bad items if any were found."""
    if isinstance(error, (KeyboardInterrupt, Interrupted, UsageError, output_lib.OutputBusy)):
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
    """Prints a progress line while the pipeline runs, from what has reached the staging folder,
    and keeps a gs:// output's lock fresh."""

    def __init__(self, settings, claim=None):
        self.settings = settings
        self.claim = claim
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
                if self.claim is not None and self.claim.generation is not None:
                    self.claim.heartbeat_if_due()
            except output_lib.LockLost as error:    # the commit checks the lock and refuses
                sys.stderr.write("\nwarning: %s\n" % error)
            except Exception:       # the network: try again next tick
                pass
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
