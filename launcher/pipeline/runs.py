"""A pipeline run's folder, ``WORK_DIR/runs/<run>/``, and the record each step leaves in it:
``RUN_DIR/steps/<step>.json`` says which step ran and how it ended, so that a failed run names its
step and a local run can show its progress."""
import json
import re
import time

from launcher.errors import StepFailed
from tfproc import fsutil

RUNS = "runs"
SETTINGS = "run.json"       # what the run was started with, so that it resumes only as itself


def run_name(given, job_name):
    """The run's name: the one given (a local run), else the pipeline job's (KFP's placeholder)."""
    name = given or job_name
    if not name or name.startswith("{{"):
        raise StepFailed("no run name: the pipeline job's name was not substituted")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def run_dir(work_dir, name):
    return fsutil.join(fsutil.join(work_dir, RUNS), name)


def record_step(folder, step, state, detail=""):
    """RUN_DIR/steps/<step>.json: which step ran, and how it ended (a failed local run names it)."""
    fsutil.write_json(fsutil.join(folder, "steps", step + ".json"), {"step": step, "state": state, "detail": detail,
                                                                     "time": time.time()})


def step_records(folder):
    """Every RUN_DIR/steps/<step>.json record."""
    steps = fsutil.join(folder, "steps")
    names = sorted(fsutil.list_tree(steps))
    return [r for r in (fsutil.read_json_or_none(fsutil.join(steps, n)) for n in names
                        if not n.endswith("-attempts.json")) if r]


def failed_step(folder):
    """The step of a run that failed, from its records, or None."""
    steps = fsutil.join(folder, "steps")
    for name in sorted(fsutil.list_tree(steps)):
        record = fsutil.read_json_or_none(fsutil.join(steps, name))
        if record and record.get("state") == "failed":
            return record
    return None


def recorded(folder, step, function, *args):
    """``function(*args)``, with RUN_DIR/steps/<step>.json saying it ran and how it ended. A step of
    a local run ends with its launcher, even one killed (the launcher's pid in the environment)."""
    from tfproc import orphans
    from trainer import container
    orphans.watch_main(env=container.LAUNCHER_PID)
    record_step(folder, step, "running")
    try:
        result = function(*args)
    except StepFailed as error:
        record_step(folder, step, "failed", str(error))
        raise
    except Exception as error:
        record_step(folder, step, "failed", "%s: %s" % (type(error).__name__, error))
        raise
    record_step(folder, step, "succeeded")
    return result


def mark_interrupted(folder):
    """The steps recorded as running, recorded as interrupted (their processes were ended)."""
    for record in step_records(folder):
        if record.get("state") == "running":
            record_step(folder, record["step"], "interrupted", "the run was interrupted; the same command resumes it")


def keep_settings(folder, arguments):
    """Record the run's settings at its first start (RUN_DIR/run.json); a later start of the same
    run with other settings is refused (``StepFailed`` naming them) before anything runs, so that
    a finished run's records are never touched by another run."""
    path = fsutil.join(folder, SETTINGS)
    recorded = fsutil.read_json_or_none(path)
    if recorded is None:
        fsutil.write_json(path, arguments)
        return
    asked = json_roundtrip(arguments)
    different = sorted(key for key in set(recorded) | set(asked) if recorded.get(key, "") != asked.get(key, ""))
    if different:
        raise StepFailed("run %s was started with other settings (%s); the same command resumes it, another "
                         "--run-id starts a new run" % (folder.rstrip("/").rsplit("/", 1)[-1], "; ".join(
                             "%s %s, now %s" % (key.replace("_", "-"), _shown(recorded.get(key)),
                                                _shown(asked.get(key))) for key in different)))


def json_roundtrip(value):
    return json.loads(fsutil.json_bytes(value))


def _shown(value):
    return "unset" if value in (None, "") else json.dumps(value)
