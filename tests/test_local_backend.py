"""``launcher train --backend local``: the Vertex job body run here, every replica a process with the
environment Vertex gives it, the commands typed from a working folder with relative paths."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import convert
from tfproc import sample

SMALL = ["--backbone", "mobilenet", "--fpn-type", "fpn", "--model-size", "small", "--train-batch-size", "4",
         "--image-size", "128,128"]
EVERY_DETECTION = "{task: {model: {detection_generator: {pre_nms_score_threshold: 0.0}}}}"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    base = tmp_path_factory.mktemp("local")
    sample.make_run(str(base / "run"), app_params=2, instances=2, frames=6, width=128, height=96, seed=3)
    assert convert("--source", base / "run", "--eval-pct", 30, "--output", base / "data") == 0
    return base


def environment(work):
    env = dict(os.environ, SYNTHDET_LOCAL_JOBS=str(work / "jobs"))
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    return env


def command(module, *args, work, timeout=900):
    done = subprocess.run([sys.executable, "-m", module] + [str(a) for a in args], cwd=work, capture_output=True,
                          text=True, timeout=timeout, env=environment(work), stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def eval_images(work):
    return json.loads((work / "data" / "summary.json").read_text())["splits"]["eval"]["images"]


def test_a_chief_and_a_worker_train_evaluate_every_image_once_and_export_once(work):
    code, out, err = command("launcher", "train", "--backend", "local", "--accelerator", "cpu", "--replicas", 2,
                             "--dataset", "data", "--job-dir", "runs/mw", "--job-id", "mw_1", "--max-steps", 6,
                             "--train-steps-per-eval", 3, *SMALL, "--params-override", EVERY_DETECTION, work=work)
    assert code == 0, out + err
    assert "local job mw_1: SUCCEEDED" in out
    assert "[workerpool0-0] strategy multi_worker_mirrored with 2 replica(s)" in out
    assert "[workerpool0-0] evaluation at step 6 on %d images" % eval_images(work) in out
    assert "[workerpool1-0]" not in out              # the chief speaks; the worker says the same into the job's log
    assert out.count("exported the SavedModel") == 1 and "[workerpool0-0] exported" in out
    checkpoints = work / "runs" / "mw" / "checkpoints"            # AIP_CHECKPOINT_DIR
    metrics = json.loads((checkpoints / "metrics.json").read_text())
    assert metrics["step"] == 6 and metrics["images"] == eval_images(work)
    assert [json.loads(line)["step"] for line in (checkpoints / "metrics_history.jsonl").read_text().splitlines()] \
        == [3, 6]
    assert (work / "runs" / "mw" / "model" / "saved_model.pb").exists()          # AIP_MODEL_DIR
    assert (checkpoints / "train.log").exists() and (checkpoints / "train-worker-0.log").exists()
    for folder in ("train", "validation"):                        # AIP_TENSORBOARD_LOG_DIR: one writer, the chief's
        assert len(glob.glob(str(work / "runs" / "mw" / "logs" / folder / "events.*"))) == 1

    # the same checkpoint scored by one process: the same images, the same AP
    code, out, err = command("trainer", "evaluate", "--dataset", "data", "--model-dir", "runs/mw/checkpoints",
                             "--output", "single", work=work)
    assert code == 0, err
    single = json.loads((work / "single" / "metrics.json").read_text())
    assert single["step"] == 6 and single["images"] == metrics["images"]
    print("multi-worker AP %.6f, single-worker AP %.6f" % (metrics["AP"], single["AP"]))
    # Two replicas run the model at half the batch size, so scores differ in their last bits; after 6
    # steps every detection is a marginal one and one of them more or less moves AP by about 1e-4.
    assert abs(single["AP"] - metrics["AP"]) < 1e-3 and abs(single["AP50"] - metrics["AP50"]) < 1e-3

    code, out, _ = command("launcher", "status", "mw_1", "--backend", "local", work=work)
    assert code == 0 and "job mw_1: SUCCEEDED" in out
    code, out, _ = command("launcher", "logs", "mw_1", "--backend", "local", work=work)
    assert code == 0 and "[workerpool1-0] training mobilenet" in out
    for replica in ("workerpool0-0", "workerpool1-0"):
        assert "[%s] strategy multi_worker_mirrored with 2 replica(s)" % replica in out
        assert "[%s] evaluation at step 6 on %d images" % (replica, eval_images(work)) in out
    code, out, _ = command("launcher", "list", "--backend", "local", work=work)
    assert code == 0 and out.split()[0] == "mw_1"

    # submitted again: re-attached, nothing trains; after a failure: a new attempt, which resumes
    code, out, err = command("launcher", "train", "--backend", "local", "--accelerator", "cpu", "--replicas", 2,
                             "--dataset", "data", "--job-dir", "runs/mw", "--job-id", "mw_1", "--max-steps", 6,
                             "--train-steps-per-eval", 3, *SMALL, "--params-override", EVERY_DETECTION, work=work)
    assert code == 0 and "local job mw_1: SUCCEEDED" in out and "[workerpool" not in out
    record_path = work / "jobs" / "mw_1" / "job.json"
    record = json.loads(record_path.read_text())
    record.update(state="FAILED", error="the machine was preempted")
    record_path.write_text(json.dumps(record))
    code, out, err = command("launcher", "train", "--backend", "local", "--accelerator", "cpu", "--replicas", 2,
                             "--dataset", "data", "--job-dir", "runs/mw", "--job-id", "mw_1", "--max-steps", 6,
                             "--train-steps-per-eval", 3, *SMALL, "--params-override", EVERY_DETECTION, work=work)
    assert code == 0, out + err
    assert "job mw_1 ended FAILED (the machine was preempted); started attempt mw_1_attempt2" in out
    assert "already trained to step 6; exporting it" in out and "local job mw_1_attempt2: SUCCEEDED" in out


def test_a_replica_gets_the_environment_vertex_gives_a_container():
    from launcher.jobs import local
    from trainer import container
    body = {"displayName": "j", "jobSpec": {"baseOutputDirectory": {"outputUriPrefix": "gs://b/job"},
                                            "workerPoolSpecs": [{"replicaCount": "1"}, {"replicaCount": "2"}]}}
    replicas = local.replica_environments(body, {"PATH": "/usr/bin", "HOME": "/root"})
    assert [name for name, *_ in replicas] == ["workerpool0-0", "workerpool1-0", "workerpool1-1"]
    name, pool, index, env = replicas[2]
    tf_config = json.loads(env["TF_CONFIG"])
    assert tf_config["task"] == {"type": "worker", "index": 1} and len(tf_config["cluster"]["worker"]) == 2
    assert tf_config["cluster"]["chief"][0].startswith("127.0.0.1:")
    ports = tf_config["cluster"]["chief"] + tf_config["cluster"]["worker"]
    assert len(set(ports)) == 3
    cluster_spec = json.loads(env["CLUSTER_SPEC"])
    assert cluster_spec["task"] == {"type": "workerpool1", "index": 1}
    assert cluster_spec["cluster"]["workerpool1"] == tf_config["cluster"]["worker"]
    assert (env["AIP_MODEL_DIR"], env["AIP_CHECKPOINT_DIR"], env["AIP_TENSORBOARD_LOG_DIR"]) == \
        ("gs://b/job/model/", "gs://b/job/checkpoints/", "gs://b/job/logs/")
    assert env["LD_LIBRARY_PATH"] == container.IMAGE_ENV["LD_LIBRARY_PATH"]
    assert env["PATH"] == "/usr/local/nvidia/bin:/usr/bin" and env["HOME"] == "/root"


def test_the_evaluator_pool_is_no_part_of_tf_configs_cluster_as_on_vertex():
    from launcher.jobs import local
    body = {"displayName": "j", "jobSpec": {"workerPoolSpecs": [
        {"replicaCount": "1"}, {"replicaCount": "1"}, {"replicaCount": "1"}, {"replicaCount": "1"}]}}
    replicas = local.replica_environments(body, {"PATH": "/usr/bin"})
    configs = [json.loads(env["TF_CONFIG"]) for *_, env in replicas]
    assert [c["task"]["type"] for c in configs] == ["chief", "worker", "ps", "evaluator"]
    for config in configs:
        assert sorted(config["cluster"]) == ["chief", "ps", "worker"]
    assert sorted(json.loads(replicas[3][3]["CLUSTER_SPEC"])["cluster"]) == [
        "workerpool0", "workerpool1", "workerpool2", "workerpool3"]       # CLUSTER_SPEC names every pool


def test_replicas_end_with_their_launcher_even_when_it_is_killed(work):
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launcher", "train", "--backend", "local", "--accelerator", "cpu", "--dataset", "data",
         "--job-dir", "runs/orphan", "--job-id", "orphan_1", "--max-steps", "100000", *SMALL],
        cwd=work, env=environment(work), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    for line in launcher.stdout:
        if "] training mobilenet" in line or time.monotonic() - started > 300:
            break
    (replica,) = children(launcher.pid)
    launcher.kill()                         # SIGKILL: no handler runs, nothing is cleaned up
    launcher.wait(timeout=30)
    began = time.monotonic()
    while time.monotonic() - began < 20 and os.path.exists("/proc/%d" % replica) and \
            open("/proc/%d/stat" % replica).read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
        time.sleep(0.2)
    gone = not os.path.exists("/proc/%d" % replica) or \
        open("/proc/%d/stat" % replica).read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    if not gone:
        os.kill(replica, signal.SIGKILL)
    assert gone, "the replica went on training into the job dir after its launcher died"
    assert time.monotonic() - began < 10
    code, out, _ = command("launcher", "status", "orphan_1", "--backend", "local", work=work)
    assert code == 0 and "FAILED" in out


def test_a_gpu_promised_to_this_machine_fails_the_job_as_on_vertex(work):
    began = time.monotonic()
    code, out, err = command("launcher", "train", "--backend", "local", "--accelerator", "gpu", "--dataset", "data",
                             "--job-dir", "runs/gpu", "--job-id", "gpu_1", *SMALL, work=work)
    assert code == 1 and "local job gpu_1: FAILED" in out
    assert "promised 1 GPU(s) but TensorFlow sees 0" in out and "Likely cause: libcuda.so.1" in out
    assert "error: job gpu_1 ended FAILED" in err and time.monotonic() - began < 120


def test_ctrl_c_cancels_every_replica(work):
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launcher", "train", "--backend", "local", "--accelerator", "cpu", "--replicas", "2",
         "--dataset", "data", "--job-dir", "runs/cancel", "--job-id", "cancel_1", "--max-steps", "100000", *SMALL],
        cwd=work, env=environment(work), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    for line in launcher.stdout:
        if "] training mobilenet" in line or time.monotonic() - started > 300:
            break
    launcher.send_signal(signal.SIGINT)
    began = time.monotonic()
    out, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 1 and time.monotonic() - began < 20, err
    assert "local job cancel_1: CANCELLED" in out
    record = json.loads((work / "jobs" / "cancel_1" / "job.json").read_text())
    assert record["state"] == "CANCELLED" and all(code != 0 for code in record["exitCodes"].values())


def test_ctrl_c_stops_a_training_within_seconds_leaving_a_whole_checkpoint(work):
    trainer = subprocess.Popen(
        [sys.executable, "-m", "trainer", "train", "--dataset", "data", "--model-dir", "runs/stop", "--max-steps",
         "100000", "--train-steps-per-eval", "100000", *SMALL, "--params-override", "{trainer: {steps_per_loop: 2, "
         "checkpoint_interval: 2}}"], cwd=work, env=environment(work), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    steps = 0
    for line in trainer.stderr:
        steps += "] step " in line
        if steps == 2:           # the checkpoint of the first loop is written after its line
            break
    trainer.send_signal(signal.SIGINT)
    began = time.monotonic()
    _, err = trainer.communicate(timeout=60)
    assert trainer.returncode == 130 and time.monotonic() - began < 5, err
    assert "interrupted: the newest whole checkpoint stays" in err
    import tensorflow as tf
    latest = tf.train.latest_checkpoint(str(work / "runs" / "stop"))
    assert latest and tf.train.load_variable(latest, "global_step/.ATTRIBUTES/VARIABLE_VALUE") >= 2


def children(pid):
    """The processes whose parent is ``pid`` (the replicas a local job started)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def test_a_training_killed_like_a_preempted_spot_vm_resumes_from_its_newest_checkpoint(work):
    import tensorflow as tf
    args = ["train", "--backend", "local", "--accelerator", "cpu", "--spot", "--dataset", "data", "--job-dir",
            "runs/spot", "--job-id", "spot_1", "--max-steps", 10, "--train-steps-per-eval", 10, *SMALL,
            "--params-override", "{trainer: {steps_per_loop: 2, checkpoint_interval: 2}}"]
    job = subprocess.Popen([sys.executable, "-m", "launcher"] + [str(a) for a in args], cwd=work,
                           env=environment(work), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    steps = 0
    for line in job.stdout:
        steps += "] step " in line
        if steps == 2:      # the checkpoint of step 2 is written after the first loop's line
            break
    (replica,) = children(job.pid)
    os.kill(replica, signal.SIGKILL)        # no SIGTERM, no grace: the worst a preemption does
    out, err = job.communicate(timeout=60)
    assert job.returncode == 1 and "job spot_1 ended FAILED" in err, out + err
    checkpoints = work / "runs" / "spot" / "checkpoints"
    newest = tf.train.load_variable(tf.train.latest_checkpoint(str(checkpoints)), "global_step/.ATTRIBUTES/VARIABLE_VALUE")
    assert 2 <= newest < 10

    code, out, err = command("launcher", *args, "--resume", work=work)
    assert code == 0, out + err
    assert "job spot_1 ended FAILED" in out and "started attempt spot_1_attempt2" in out
    assert "[workerpool0-0] resuming from the checkpoint at step %d" % newest in out
    assert "local job spot_1_attempt2: SUCCEEDED" in out
    assert json.loads((checkpoints / "metrics.json").read_text())["step"] == 10
    measured = json.loads((checkpoints / "timing.json").read_text())
    assert measured["steps"] > 0 and measured["settings"]["machine_type"] == "n1-standard-8"

    # the measured step time prices the next run with the same settings, and only those
    code, out, err = command("launcher", *[a if a != "runs/spot" else "runs/next" for a in args],
                             "--step-time-from", "runs/spot/checkpoints", "--max-steps", 5000, "--dry-run", work=work)
    assert code == 0, err
    from launcher.jobs import prices
    hours = measured["seconds_per_step"] * 5000 / 3600.0
    cost = prices.money(hours * prices.PER_HOUR["us-central1"]["n1-standard-8"][1])
    assert "expected: $%s for 5000 steps (%.2f s a step, measured in runs/spot/checkpoints" % (
        cost, measured["seconds_per_step"]) in out, out
    code, out, err = command("launcher", *[a if a != "runs/spot" else "runs/next" for a in args],
                             "--step-time-from", "runs/spot/checkpoints", "--train-batch-size", 8, "--dry-run",
                             work=work)
    assert code == 0 and "expected:" not in out
    assert "measured with other settings (train_batch_size: 4 there, 8 here)" in out


def test_ctrl_c_on_a_local_pipeline_ends_its_running_step_and_records_it(work):
    pytest.importorskip("kfp")
    from tfproc import orphans
    args = [sys.executable, "-m", "launcher", "pipeline", "run", "--local", "--source", "run", "--work-dir", "pipe",
            "--run-id", "stopped", "--max-steps", "100000", "--train-steps-per-eval", "100000", "--backbone",
            "mobilenet", "--fpn-type", "fpn", "--train-batch-size", "2", "--image-size", "128,128"]
    launcher = subprocess.Popen(args, cwd=work, env=environment(work), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    record = work / "pipe" / "runs" / "stopped" / "steps" / "train.json"
    began = time.monotonic()
    while time.monotonic() - began < 300 and not (record.exists() and '"running"' in record.read_text()):
        assert launcher.poll() is None, launcher.communicate()
        time.sleep(0.5)
    time.sleep(3)                                   # the step is in TensorFlow now
    run_processes = orphans.descendants(launcher.pid)
    assert run_processes, "no step process"
    launcher.send_signal(signal.SIGINT)             # the launcher alone, as a SIGTERM from a supervisor would
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 130, err
    assert "interrupted: the running step was ended and recorded as interrupted; the same command resumes run " \
           "stopped" in err
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not all(orphans.process_gone(pid) for pid in run_processes):
        time.sleep(0.2)
    left = [pid for pid in run_processes if not orphans.process_gone(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "processes of the run were left running"
    assert json.loads(record.read_text())["state"] == "interrupted"


def test_a_second_launcher_of_a_running_job_waits_for_its_end(work):
    """The job recorded as running by another launcher (a live process, which ends it 4 s later)."""
    args = ["train", "--backend", "local", "--accelerator", "cpu", "--dataset", "data", "--job-dir", "runs/twice",
            "--job-id", "twice_1", "--max-steps", 2, "--train-steps-per-eval", 2, *SMALL]
    code, out, err = command("launcher", *args, "--dry-run", work=work)
    assert code == 0, err
    body, _ = json.JSONDecoder().raw_decode(out[out.index("{"):])
    record = work / "jobs" / "twice_1" / "job.json"
    record.parent.mkdir(parents=True)
    ender = subprocess.Popen([sys.executable, "-c", "import json, os, sys, time; time.sleep(4); path = sys.argv[1]; "
                              "r = json.load(open(path)); r.update(state='SUCCEEDED', endTime='2026-12-07T00:00:04Z'); "
                              "json.dump(r, open(path + '.tmp', 'w')); os.replace(path + '.tmp', path)", str(record)])
    record.write_text(json.dumps(dict(body, state="RUNNING", pid=ender.pid, createTime="2026-12-07T00:00:00Z")))
    began = time.monotonic()
    code, out, err = command("launcher", *args, work=work)
    ender.wait(timeout=60)
    assert code == 0, out + err
    assert "job twice_1 is running in another process (pid %d); waiting for it to end" % ender.pid in out
    assert "local job twice_1: SUCCEEDED" in out and time.monotonic() - began >= 3
