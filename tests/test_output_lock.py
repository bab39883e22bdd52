"""The output's lock (issue 16): exclusive on gs:// against a server that honours generation
preconditions, never lost silently, never removed from under another run, and one clear line when a
filesystem has no locks."""
import errno
import json
import os
import socket
import time

import pytest

from fakes import FakeGcs, FakeServer
from tfproc import fsutil, output, pipeline

OUT = "gs://locks/runs/out"
KEY = ("locks", "runs/out/" + output.LOCK)


@pytest.fixture
def gcs(monkeypatch):
    with FakeServer() as server:
        fake = FakeGcs(server)
        monkeypatch.setattr(fsutil, "_CLIENT", [fake.client()])
        yield fake


def put_lock(gcs, **record):
    holder = {"run": "other", "host": "elsewhere", "pid": 1, "started": time.time(), "heartbeat": time.time(),
              "job": ""}
    holder.update(record)
    gcs.next_generation += 1
    gcs.objects[KEY] = {"data": json.dumps(holder).encode(), "generation": gcs.next_generation}


def holder(gcs):
    return json.loads(gcs.objects[KEY]["data"])


def test_a_claim_creates_the_lock_only_if_there_is_none(gcs):
    claim = output.claim(OUT, "mine")
    assert holder(gcs)["run"] == "mine" and claim.generation == gcs.objects[KEY]["generation"]
    with pytest.raises(output.OutputBusy, match="being written by another conversion"):
        output.claim(OUT, "second")
    assert holder(gcs)["run"] == "mine"
    claim.release()
    assert KEY not in gcs.objects


def test_a_live_lock_of_another_machine_is_respected_and_a_stale_one_taken_over(gcs):
    put_lock(gcs)
    with pytest.raises(output.OutputBusy, match="run other from elsewhere"):
        output.claim(OUT, "mine")
    assert holder(gcs)["run"] == "other"
    put_lock(gcs, heartbeat=time.time() - output.STALE_AFTER_SECONDS - 5)
    claim = output.claim(OUT, "mine")
    assert holder(gcs)["run"] == "mine"
    claim.release()


def test_break_lock_takes_over_a_live_lock(gcs):
    put_lock(gcs, job="2026-11-30_dataflow_job")
    with pytest.raises(output.OutputBusy, match="--break-lock"):
        output.claim(OUT, "mine")
    output.claim(OUT, "mine", break_lock=True)
    assert holder(gcs)["run"] == "mine"


def test_a_heartbeat_after_another_run_took_the_lock_fails_and_leaves_it(gcs):
    claim = output.claim(OUT, "mine")
    claim.heartbeat()
    assert holder(gcs)["run"] == "mine"
    put_lock(gcs, run="intruder", host=socket.gethostname())     # e.g. taken with --break-lock
    with pytest.raises(output.LockLost, match="another run took this run's lock"):
        claim.heartbeat()
    assert holder(gcs)["run"] == "intruder"
    with pytest.raises(output.LockLost, match="taken by run intruder"):
        output.verify(OUT, "mine")
    claim.release()       # releases only its own lock
    assert holder(gcs)["run"] == "intruder"


def test_the_heartbeat_comes_often_enough_to_keep_the_lock_alive(gcs, monkeypatch):
    assert output.STALE_AFTER_SECONDS >= 5 * output.HEARTBEAT_SECONDS
    claim = output.claim(OUT, "mine")
    first = gcs.objects[KEY]["generation"]
    claim.heartbeat_if_due()
    assert gcs.objects[KEY]["generation"] == first          # not due yet
    claim.last_beat = time.time() - output.HEARTBEAT_SECONDS - 1
    claim.heartbeat_if_due()
    assert gcs.objects[KEY]["generation"] > first
    assert time.time() - holder(gcs)["heartbeat"] < 5


def test_a_run_whose_lock_was_taken_does_not_commit(tmp_path, monkeypatch):
    """The point of no return checks the lock: a run that lost it leaves the output as it was."""
    calls = []
    monkeypatch.setattr(output, "verify", lambda out, run: (_ for _ in ()).throw(output.LockLost("taken")))
    monkeypatch.setattr(output, "write_committed", lambda *a: calls.append(a))

    class Labels:
        num_classes, shift, conflicts, names = 1, 0, [], {1: "a"}

        def to_pbtxt(self):
            return ""

    settings = pipeline.Settings(source="s", output=str(tmp_path / "out"), run_id="r", eval_pct=20,
                                 shard_bytes=1, strict=False, started=time.time())
    os.makedirs(settings.staging)
    merged = pipeline.report.new()
    merged["splits"]["train"] = dict(pipeline.report.split_counts(pipeline.report.new(), "train"), images=1)
    with pytest.raises(pipeline.ConversionFailed, match="taken"):
        pipeline.finish(merged, settings, Labels(), {"train": (1, 10)})
    assert not calls


def test_a_retried_finish_on_gs_releases_the_lock(monkeypatch):
    """Dataflow retries the last step after the point of no return: it commits and releases too."""
    released, committed = [], []
    monkeypatch.setattr(fsutil, "is_file", lambda path: path.endswith(output.COMMITTED))
    monkeypatch.setattr(output, "commit", lambda out, staging: committed.append(out))
    monkeypatch.setattr(output, "release_remote", lambda out, run: released.append((out, run)))
    settings = pipeline.Settings(source="gs://b/s", output=OUT, run_id="r1", eval_pct=20, shard_bytes=1,
                                 strict=False, started=time.time())
    pipeline.finish({}, settings, None, {})
    assert committed == [OUT] and released == [(OUT, "r1")]


def test_a_lock_removed_while_another_run_opens_it_is_not_shared(tmp_path, monkeypatch):
    """Run A ends and removes its lock file while holding it; run B had opened that file and locks it
    right after. B must end up holding the lock at the path, so that run C is refused."""
    import fcntl
    out = str(tmp_path / "out")
    first = output.claim(out, "A")
    real_flock = fcntl.flock
    state = {"raced": False}

    def flock(handle, operation):
        if operation == fcntl.LOCK_EX | fcntl.LOCK_NB and not state["raced"] and handle is not first.handle:
            state["raced"] = True            # B holds the old file open: A removes it and lets go
            output.remove_local_lock(first)
            first.release()
        return real_flock(handle, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    second = output.claim(out, "B")
    monkeypatch.setattr(fcntl, "flock", real_flock)
    assert state["raced"]
    with pytest.raises(output.OutputBusy, match="run B"):
        output.claim(out, "C")
    second.release()


def test_a_filesystem_without_locks_is_named_not_taken_for_a_busy_output(tmp_path, monkeypatch, capsys):
    import fcntl

    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(output.OutputUnusable, match="without file locks"):
        output.claim(str(tmp_path / "out"), "A")
    from conftest import convert
    from tfproc import sample
    sample.make_run(str(tmp_path / "run"), app_params=1, instances=1, frames=2, width=32, height=24, seed=1)
    assert convert("--source", tmp_path / "run", "--eval-pct", 20, "--output", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "without file locks" in err and "another conversion" not in err and "Traceback" not in err
