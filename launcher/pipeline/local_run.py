"""``pipeline run --local``: the pipeline with KFP's local runner in this environment, a line for
each step as it starts and ends, and KFP's own output in RUN_DIR/pipeline.log."""
import os
import re
import signal
import threading
import time

from launcher.errors import LauncherError
from launcher.pipeline import runs
from launcher.pipeline.definition import DEFAULT_IMAGE, build


def run_locally(pipeline_root, arguments, image=DEFAULT_IMAGE, verbose=False):
    """The same pipeline with KFP's local runner, in this environment (subprocess mode). A failure
    names the step that failed, from the run's own step records."""
    from kfp import local

    from tfproc import console
    from trainer import container
    folder = runs.run_dir(arguments["work_dir"], arguments["run_name"])
    log = folder + "/pipeline.log"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root, raise_on_error=True)
    watcher = StepWatcher(folder, console.say, log=log)
    os.environ[container.LAUNCHER_PID] = str(os.getpid())      # each step ends with this process
    previous = signal.signal(signal.SIGTERM, _interrupt) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        with console.quiet(verbose):
            console.keep_log_at(log)
            watcher.start()
            try:
                return build(image)(**arguments)
            except KeyboardInterrupt:
                end_steps(folder)
                raise
            finally:
                watcher.stop()
    except RuntimeError:
        failed = runs.failed_step(folder)
        if failed:
            raise LauncherError("the pipeline failed at its %s step: %s (KFP's log: %s)"
                                % (failed["step"], failed["detail"], log))
        raise LauncherError("the pipeline failed before its first step; KFP's log: %s" % log)
    finally:
        os.environ.pop(container.LAUNCHER_PID, None)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def end_steps(folder, grace=5.0):
    """Ctrl-C or SIGTERM: end every process the run started (its running step, and what that
    started), then record the step as interrupted."""
    from tfproc import orphans
    orphans.end_processes(orphans.descendants(os.getpid()), grace)
    runs.mark_interrupted(folder)


# The trainer's heartbeat and evaluations, as a training step prints them into KFP's log.
PROGRESS = re.compile(r"^\s*\[\s*\d+s\] (step \d+/\d+.*?)\s*$|^\s*(evaluation at step \d+.*?)\s*$")


class StepWatcher:
    """A line for each step of a local run as it starts and ends, from the run's step records, and
    the training's progress (its heartbeat and evaluations) from KFP's log."""

    def __init__(self, folder, say, interval=1.0, log=None):
        self.folder, self.say, self.interval, self.log = folder, say, interval, log
        self.seen, self.began, self.running, self._offset = {}, None, None, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="steps", daemon=True)

    def start(self):
        """Watch from now on: what earlier starts of the run recorded is not news."""
        self.began = time.time()
        self.seen = {r["step"]: (r["state"], r.get("time")) for r in runs.step_records(self.folder)}
        self._offset = os.path.getsize(self.log) if self.log and os.path.exists(self.log) else 0
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self._poll()

    def _watch(self):
        while not self._stop.wait(self.interval):
            self._poll()

    def _poll(self):
        for line in self._new_log_lines():
            match = PROGRESS.match(line)
            if match and self.running in ("train", "finetune"):
                self.say("[%5.0fs] %-9s %s" % (time.time() - self.began, self.running, match.group(1) or match.group(2)))
        for record in sorted(runs.step_records(self.folder), key=lambda r: r.get("time", 0)):
            if self.seen.get(record["step"]) == (record["state"], record.get("time")):
                continue
            self.seen[record["step"]] = (record["state"], record.get("time"))
            self.running = record["step"] if record["state"] == "running" else None
            detail = " (%s)" % record["detail"] if record.get("detail") else ""
            self.say("[%5.0fs] %-9s %s%s" % (time.time() - self.began, record["step"], record["state"], detail))

    def _new_log_lines(self):
        """The whole lines KFP's log gained since the last poll."""
        if not self.log or not os.path.exists(self.log):
            return []
        with open(self.log, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        return data[:end].decode("utf-8", "replace").splitlines()
