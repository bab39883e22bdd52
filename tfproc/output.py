"""The output folder: who may write it, and how a finished run replaces what was there.

- One run at a time: a run claims the output with a lock (``.tfproc.lock``; on a local disk an
  ``flock`` that the kernel drops when the process dies; on gs:// an object created only if absent,
  kept fresh by a heartbeat). A second run is refused with a message naming the first.
- Everything a run writes goes to its staging folder (``.staging-<run>/``) until ``commit``:
  the commit first writes ``COMMITTED`` (the plan of what goes where) into the staging folder, then
  removes the old summary, moves the new shards into place, removes stale shards, and writes the
  label map and, last, ``summary.json``, the mark of a complete output. Every step can run again;
  a commit cut short is finished by the next run (``recover``), a staging folder that never reached
  ``COMMITTED`` is deleted by it. So after any interruption the folder holds the old output or the
  new one, and the next run needs no manual cleanup.
- Only files this tool names are ever deleted: shards named ``<split>-NNNNN-of-NNNNN.tfrecord`` in
  ``train/`` and ``eval/``, ``label_map.pbtxt``, ``summary.json``, and its own staging folders.
"""
import json
import os
import re
import socket
import time

from tfproc import fsutil, split

LOCK = ".tfproc.lock"
STAGING_PREFIX = ".staging-"
COMMITTED = "COMMITTED"
LABEL_MAP = "label_map.pbtxt"
SUMMARY = "summary.json"
SPLITS = (split.TRAIN, split.EVAL)
SHARD_NAME = re.compile(r"^(train|eval)-\d{5}-of-\d{5}\.tfrecord$")
HEARTBEAT_SECONDS = 60
STALE_AFTER_SECONDS = 15 * 60   # a gs:// lock not refreshed for this long belongs to a dead run


class OutputBusy(Exception):
    """Another run holds the output."""


def staging_folder(output, run_id):
    return fsutil.join(output, STAGING_PREFIX + run_id)


# -- the lock --------------------------------------------------------------------------------

class Claim:
    """This run's hold on an output folder; ``release`` ends it."""

    def __init__(self, output, run_id, record, handle=None, generation=None):
        self.output, self.run_id, self.record = output, run_id, record
        self.handle, self.generation = handle, generation
        self.last_beat = time.time()

    def heartbeat(self, **extra):
        """Refresh a gs:// lock (and record e.g. a Dataflow job id); a local lock needs none."""
        self.record.update(extra, heartbeat=time.time())
        self.last_beat = time.time()
        if self.handle is None:
            blob = _lock_blob(self.output)
            blob.upload_from_string(json.dumps(self.record), if_generation_match=self.generation)
            self.generation = blob.generation

    def heartbeat_if_due(self):
        if self.handle is None and time.time() - self.last_beat > HEARTBEAT_SECONDS:
            self.heartbeat()

    def release(self):
        if self.handle is not None:
            import fcntl
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
        elif self.generation is not None:
            release_remote(self.output, self.run_id)
            self.generation = None


def claim(output, run_id, break_lock=False):
    """Claim ``output`` for this run or raise OutputBusy. The folder is created if need be.

    ``break_lock`` takes over a gs:// lock whatever it says (a local lock dies with its process).
    """
    record = {"run": run_id, "host": socket.gethostname(), "pid": os.getpid(),
              "started": time.time(), "heartbeat": time.time(), "job": ""}
    if fsutil.is_remote(output):
        return _claim_remote(output, run_id, record, break_lock)
    return _claim_local(output, run_id, record)


def _claim_local(output, run_id, record):
    import fcntl
    os.makedirs(output, exist_ok=True)
    handle = open(os.path.join(output, LOCK), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = _parse(handle.read())
        handle.close()
        raise OutputBusy("%s is being written by another conversion (%s); wait for it to end, "
                         "or pass another --output" % (output, _describe(holder)))
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(record))
    handle.flush()
    return Claim(output, run_id, record, handle=handle)


def _lock_blob(output):
    bucket, _, prefix = output[len("gs://"):].partition("/")
    return fsutil.storage_client().bucket(bucket).blob((prefix.rstrip("/") + "/" if prefix else "") + LOCK)


def _claim_remote(output, run_id, record, break_lock):
    from google.api_core import exceptions
    blob = _lock_blob(output)
    for _ in range(3):
        try:
            blob.upload_from_string(json.dumps(record), if_generation_match=0)
            return Claim(output, run_id, record, generation=blob.generation)
        except exceptions.PreconditionFailed:
            pass
        try:
            blob.reload()
            holder = _parse(blob.download_as_bytes(if_generation_match=blob.generation))
        except exceptions.NotFound:
            continue        # released meanwhile: try again
        except exceptions.PreconditionFailed:
            continue
        if _alive(holder) and not break_lock:
            hint = (" If that job has ended (gcloud dataflow jobs describe %s), pass --break-lock."
                    % holder["job"]) if holder.get("job") else ""
            raise OutputBusy("%s is being written by another conversion (%s); wait for it to end, "
                             "or pass another --output.%s" % (output, _describe(holder), hint))
        try:
            blob.delete(if_generation_match=blob.generation)    # only the stale lock we read
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            pass
    raise OutputBusy("%s: could not claim its lock (%s), another run keeps taking it" % (output, LOCK))


def release_remote(output, run_id):
    """Remove a gs:// lock if it is still this run's (a Dataflow job's last step calls this too)."""
    from google.api_core import exceptions
    blob = _lock_blob(output)
    try:
        blob.reload()
        if _parse(blob.download_as_bytes(if_generation_match=blob.generation)).get("run") == run_id:
            blob.delete(if_generation_match=blob.generation)
    except (exceptions.NotFound, exceptions.PreconditionFailed):
        pass


def _alive(holder):
    if holder.get("host") == socket.gethostname() and not holder.get("job"):
        return _pid_alive(holder.get("pid"))
    if holder.get("job"):
        return True     # a Dataflow job left running: only its own last step releases the lock
    return time.time() - float(holder.get("heartbeat") or 0) < STALE_AFTER_SECONDS


def _pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    return True


def _parse(text):
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else {}
    except ValueError:
        return {}


def _describe(holder):
    if not holder:
        return "no details recorded"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started") or 0)))
    what = "run %s from %s, pid %s, started %s" % (holder.get("run"), holder.get("host"), holder.get("pid"), when)
    if holder.get("job"):
        what += "; Dataflow job %s" % holder["job"]
    return what


# -- recovery and the commit -----------------------------------------------------------------

def recover(output, own_run):
    """With the lock held: finish commits cut short and delete staging folders of dead runs.

    Returns what was done, as lines for the user.
    """
    done = []
    stagings = sorted({rel.split("/", 1)[0] for rel in fsutil.list_tree(output)
                       if rel.startswith(STAGING_PREFIX)} - {STAGING_PREFIX + own_run})
    for name in stagings:
        staging = fsutil.join(output, name)
        if fsutil.is_file(fsutil.join(staging, COMMITTED)):
            commit(output, staging)
            done.append("finished the interrupted commit of an earlier run (%s)" % name)
        else:
            fsutil.delete_tree(staging)
            done.append("removed the staging folder of an interrupted run (%s)" % name)
    return done


def plan(shard_counts, written):
    """What a commit puts in place: every shard name per split, and those that hold frames."""
    return {"shards": {name: [split.shard_name(name, i, count) for i in range(count)]
                       for name, count in sorted(shard_counts.items())},
            "written": sorted(written)}


def write_committed(staging, the_plan, summary_bytes, label_map_text):
    """The point of no return: from here on the new output is the output."""
    fsutil.write_atomically(fsutil.join(staging, SUMMARY), summary_bytes)
    fsutil.write_atomically(fsutil.join(staging, LABEL_MAP), label_map_text.encode("utf-8"))
    fsutil.write_atomically(fsutil.join(staging, COMMITTED), json.dumps(the_plan).encode("utf-8"))


def commit(output, staging):
    """Put the committed run of ``staging`` in place; idempotent, so it may run any number of times."""
    the_plan = json.loads(fsutil.read_bytes(fsutil.join(staging, COMMITTED)))
    new_summary = fsutil.read_bytes(fsutil.join(staging, SUMMARY))
    old_summary = fsutil.join(output, SUMMARY)
    if fsutil.is_file(old_summary) and fsutil.read_bytes(old_summary) != new_summary:
        fsutil.delete_many([old_summary])       # the folder no longer claims to be complete

    staged = fsutil.list_tree(staging)
    written = set(the_plan["written"])
    moves, empties = [], []
    for split_name in SPLITS:
        names = the_plan["shards"].get(split_name, [])
        folder = fsutil.join(output, split_name)
        fsutil.makedirs(folder)
        existing = fsutil.list_tree(folder)
        stale = [fsutil.join(folder, rel) for rel in existing
                 if SHARD_NAME.match(rel) and rel not in names]
        fsutil.delete_many(stale)
        for name in names:
            rel = "%s/%s" % (split_name, name)
            if rel in staged:
                moves.append((fsutil.join(staging, split_name, name), fsutil.join(folder, name)))
            elif rel not in written:     # no frame hashed to it: an empty shard keeps the set whole
                empties.append(fsutil.join(folder, name))
            elif name not in existing:
                raise RuntimeError("shard %s is neither staged nor in place" % rel)
    fsutil.rename_many([m[0] for m in moves], [m[1] for m in moves])
    for path in empties:
        fsutil.write_atomically(path, b"")
    fsutil.write_atomically(fsutil.join(output, LABEL_MAP), fsutil.read_bytes(fsutil.join(staging, LABEL_MAP)))
    fsutil.write_atomically(old_summary, new_summary)
    fsutil.delete_tree(staging)


def existing_output(output):
    """Files of an earlier run in ``output`` (shards, label map, summary), for the overwrite check."""
    found = []
    for rel in fsutil.list_tree(output):
        parts = rel.split("/")
        if rel in (SUMMARY, LABEL_MAP) or (len(parts) == 2 and parts[0] in SPLITS and SHARD_NAME.match(parts[1])):
            found.append(rel)
    return sorted(found)
