"""Spot, flex-start, restarts, disks, reservations, persistent resources and keys on the Vertex job
body, the rules Vertex would refuse, and the price ceiling every dry run prints. The dry runs are
typed as a user types them, from a folder of their own, with no account."""
import json
import os
import subprocess
import sys

import pytest

from test_launcher import PROJECT, dataset, job_dir  # noqa: F401  (fixtures)
from test_vertex import JOBS, fake_vertex, vertex_train  # noqa: F401  (fixtures)

RESERVATION = "projects/%s/zones/us-central1-a/reservations/l4-pool" % PROJECT
KEY = "projects/%s/locations/us-central1/keyRings/ring/cryptoKeys/jobs" % PROJECT
DRY = ["train", "--dry-run", "--dataset", "gs://bucket/out", "--job-dir", "gs://bucket/model", "--image", "img:1",
       "--job-id", "priced"]


def launcher(*args, cwd):
    env = dict(os.environ, NO_GCE_CHECK="true")
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    env.pop("GOOGLE_CLOUD_PROJECT", None)
    done = subprocess.run([sys.executable, "-m", "launcher"] + [str(a) for a in args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def body_of(out):
    return json.JSONDecoder().raw_decode(out[out.index("{"):])[0]


def strict(body, message):
    """The body parses against the aiplatform v1 message with unknown fields refused."""
    from google.protobuf import json_format
    types = pytest.importorskip("google.cloud.aiplatform_v1.types")
    cls = {"CustomJob": types.CustomJob, "PipelineJob": types.PipelineJob}[message]
    return json_format.ParseDict(body, cls.pb(cls()), ignore_unknown_fields=False)


def test_every_flag_lands_where_custom_job_wants_it(tmp_path):
    code, out, err = launcher(*DRY, "--gpus", "2", "--replicas", "3", "--spot", "--boot-disk-size-gb", "250",
                              "--boot-disk-type", "pd-standard", "--kms-key", KEY, "--timeout", "72h", cwd=tmp_path)
    assert code == 0, err
    body = body_of(out)
    job = strict(body, "CustomJob")
    assert job.job_spec.scheduling.strategy == 4                    # SPOT
    assert job.job_spec.scheduling.restart_job_on_worker_restart    # the default for three machines
    assert job.job_spec.scheduling.timeout.seconds == 72 * 3600
    assert len(job.job_spec.worker_pool_specs) == 2
    for pool in job.job_spec.worker_pool_specs:
        assert pool.disk_spec.boot_disk_size_gb == 250 and pool.disk_spec.boot_disk_type == "pd-standard"
    assert job.encryption_spec.kms_key_name == KEY
    assert "--kms-key=%s" % KEY in out                          # the gcloud twin says it too
    code, reserved, err = launcher(*DRY, "--gpus", "2", "--replicas", "3", "--reservation", RESERVATION, cwd=tmp_path)
    assert code == 0, err
    for pool in strict(body_of(reserved), "CustomJob").job_spec.worker_pool_specs:
        affinity = pool.machine_spec.reservation_affinity
        assert affinity.reservation_affinity_type == 3          # SPECIFIC_RESERVATION
        assert affinity.key == "compute.googleapis.com/reservation-name" and list(affinity.values) == [RESERVATION]
    from launcher.jobs import prices
    ceiling = 3 * prices.PER_HOUR["us-central1"]["g2-standard-24"][1] * 72
    assert "price: at most $%s (3 × g2-standard-24 with 2 × L4 each for 3 days, Spot list price, us-central1, " \
           "prices of %s)" % ("{:,.0f}".format(ceiling), prices.PRICES_OF) in out


def test_flex_start_waits_and_a_persistent_resource_is_not_billed_twice(tmp_path):
    code, out, err = launcher(*DRY, "--flex-start", "--max-wait", "2h", "--disable-retries",
                              "--persistent-resource", "train-pool-1", cwd=tmp_path)
    assert code == 0, err
    job = strict(body_of(out), "CustomJob")
    assert job.job_spec.scheduling.strategy == 6 and job.job_spec.scheduling.max_wait_duration.seconds == 7200
    assert job.job_spec.scheduling.disable_retries and not job.job_spec.scheduling.restart_job_on_worker_restart
    assert job.job_spec.persistent_resource_id == "train-pool-1"
    assert "price: no charge of its own: a job on persistent resource train-pool-1" in out


def test_one_machine_does_not_restart_the_job_and_the_default_timeout_is_priced(tmp_path):
    code, out, err = launcher(*DRY, cwd=tmp_path)
    assert code == 0, err
    assert "scheduling" not in body_of(out)["jobSpec"]
    from launcher.jobs import prices
    week = prices.PER_HOUR["us-central1"]["g2-standard-8"][0] * 7 * 24
    assert "price: at most $%s (1 × g2-standard-8 (1 × L4) for 7 days (Vertex's default timeout: pass --timeout " \
           "to lower this ceiling), on-demand list price" % "{:,.0f}".format(week) in out


def test_a_machine_without_a_list_price_is_unpriced_never_guessed(tmp_path):
    code, out, err = launcher(*DRY, "--accelerator", "a100", "--gpus", "8", "--timeout", "10h", cwd=tmp_path)
    assert code == 0, err
    line = [x for x in out.splitlines() if x.startswith("price:")][0]
    assert "unknown: no on-demand list price here for a2-highgpu-8g in us-central1" in line and "$" not in line


def test_gpus_attached_to_an_n1_machine_are_not_priced_as_the_bare_machine(tmp_path):
    pools = tmp_path / "pools.yaml"
    pools.write_text("- machineSpec: {machineType: n1-standard-8, acceleratorType: NVIDIA_TESLA_T4, "
                     "acceleratorCount: 4}\n  replicaCount: '1'\n")
    code, out, err = launcher(*DRY, "--worker-pool-spec-file", pools, "--timeout", "10h", cwd=tmp_path)
    assert code == 0, err
    line = [x for x in out.splitlines() if x.startswith("price:")][0]
    assert "unknown: no on-demand list price here for n1-standard-8 with 4 × NVIDIA_TESLA_T4 attached" in line
    assert "$" not in line
    pools.write_text("- machineSpec: {machineType: n1-standard-8}\n  replicaCount: '1'\n")
    code, out, err = launcher(*DRY, "--worker-pool-spec-file", pools, "--timeout", "10h", cwd=tmp_path)
    assert code == 0, err
    from launcher.jobs import prices
    assert "price: at most $%s (1 × n1-standard-8 for 10 h, on-demand" % prices.money(
        prices.PER_HOUR["us-central1"]["n1-standard-8"][0] * 10) in out


@pytest.mark.parametrize("flags, message", [
    (["--spot", "--flex-start"], "--spot and --flex-start are two scheduling strategies"),
    (["--max-wait", "2h"], "--max-wait is how long a --flex-start job may wait"),
    (["--flex-start", "--max-wait", "soon"], "--max-wait takes a duration"),
    (["--flex-start", "--reservation", RESERVATION], "FLEX_START (Dynamic Workload Scheduler) and persistent "
                                                     "resources cannot be used together with a Compute Engine"),
    (["--persistent-resource", "p1", "--reservation", RESERVATION], "--persistent-resource cannot be used with "
                                                                    "--reservation"),
    (["--reservation", "l4-pool"], "--reservation takes the reservation's full name"),
    (["--reservation", RESERVATION.replace("us-central1-a", "europe-west4-b")], "outside the job's region"),
    (["--persistent-resource", "projects/p/locations/us-central1/persistentResources/x"], "not its full name"),
    (["--kms-key", "jobs"], "--kms-key takes projects/PROJECT/locations/LOCATION"),
    (["--kms-key", KEY.replace("us-central1", "europe-west4")], "The key needs to be in the same region"),
    (["--disable-retries", "--restart-on-worker-restart"], "--disable-retries turns off"),
    (["--boot-disk-size-gb", "0"], "--boot-disk-size-gb must be 100-64000 GB"),
    (["--boot-disk-size-gb", "99"], "--boot-disk-size-gb must be 100-64000 GB"),
    (["--boot-disk-size-gb", "64001"], "--boot-disk-size-gb must be 100-64000 GB"),
    (["--boot-disk-size-gb", str(2 ** 31)], "--boot-disk-size-gb must be 100-64000 GB"),
    (["--spot", "--reservation", RESERVATION], "Spot VMs cannot consume reservations"),
    (["--flex-start", "--accelerator", "cpu"], "--flex-start needs L4, A100, H100, H200 or B200 GPUs"),
    (["--flex-start", "--timeout", "8d"], "--flex-start needs --timeout of 7 days or less"),
    (["--model-size", "small"], "--model-size small is MobileNetV2 with an FPN: pass --backbone mobilenet"),
    (["--model-size", "small", "--backbone", "mobilenet", "--fpn-type", "nasfpn"], "--model-size small is MobileNetV2"),
])
def test_what_vertex_refuses_ends_with_one_line_before_anything_is_sent(fake_vertex, google, dataset, flags,
                                                                          message):
    code, out, err = vertex_train(dataset, "refused", *flags)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not google.calls("POST", JOBS) and not google.calls("GET", JOBS)


@pytest.mark.parametrize("pools, message", [
    ("- machineSpec: {machineType: g2-standard-8, acceleratorType: NVIDIA_L4, acceleratorCount: 1}\n"
     "- machineSpec: {machineType: g2-standard-24, acceleratorType: NVIDIA_L4, acceleratorCount: 2}\n"
     "  replicaCount: '1'\n", "--flex-start needs one machine for every worker pool"),
    ("- machineSpec: {machineType: n1-standard-8, acceleratorType: NVIDIA_TESLA_T4, acceleratorCount: 1}\n",
     "--flex-start needs L4, A100, H100, H200 or B200 GPUs"),
])
def test_flex_start_rules_that_need_the_pools_are_checked_before_sending(fake_vertex, google, dataset, tmp_path,
                                                                         pools, message):
    spec = tmp_path / "pools.yaml"
    spec.write_text(pools)
    code, _, err = vertex_train(dataset, "flex", "--flex-start", "--worker-pool-spec-file", str(spec))
    assert code == 2 and message in err, err
    assert not google.calls("POST", JOBS)


@pytest.mark.parametrize("pool, message", [
    ("{machineType: g2-standard-8, acceleratorType: NVIDIA_L4, acceleratorCount: %d}" % 2 ** 31,
     "machineSpec.acceleratorCount must be a whole number from 1 to 2147483647 (the API's int32 field)"),
    ("{machineType: g2-standard-8}\n  replicaCount: '%d'" % 2 ** 63, "replicaCount must be a whole number from 1"),
    ("{machineType: g2-standard-8}\n  diskSpec: {bootDiskSizeGb: 70000}",
     "workerPoolSpecs[0].diskSpec.bootDiskSizeGb must be 100-64000 GB"),
])
def test_a_pool_file_with_values_the_api_cannot_hold_is_refused(fake_vertex, google, dataset, tmp_path, pool,
                                                                 message):
    spec = tmp_path / "pools.yaml"
    spec.write_text("- machineSpec: %s\n" % pool)
    code, _, err = vertex_train(dataset, "int32", "--worker-pool-spec-file", str(spec))
    assert code == 2 and message in err, err
    assert not google.calls("POST", JOBS)


def test_the_pipelines_jobs_follow_the_same_rules_before_anything_is_sent(tmp_path):
    common = ["pipeline", "run", "--project", PROJECT, "--pipeline-root", "gs://b/p", "--source", "gs://b/run",
              "--dry-run"]
    for flags, message in ((["--flex-start", "--accelerator", "cpu"], "--flex-start needs L4, A100"),
                           (["--flex-start", "--timeout", "8d"], "--flex-start needs --timeout of 7 days or less"),
                           (["--spot", "--reservation", RESERVATION], "Spot VMs cannot consume reservations"),
                           (["--boot-disk-size-gb", "50"], "--boot-disk-size-gb must be 100-64000 GB")):
        code, out, err = launcher(*common, *flags, cwd=tmp_path)
        assert code == 2 and message in err and not out, (flags, err)


def test_a_submitted_job_carries_the_choices_and_the_price_is_said_first(fake_vertex, google, dataset):
    code, out, err = vertex_train(dataset, "spot_1", "--spot", "--replicas", "2", "--kms-key", KEY)
    assert code == 0, err
    body = google.calls("POST", JOBS)[0]["body"]
    strict(body, "CustomJob")
    assert body["jobSpec"]["scheduling"] == {"strategy": "SPOT", "restartJobOnWorkerRestart": True}
    assert body["encryptionSpec"] == {"kmsKeyName": KEY}
    assert err.startswith("price: at most $") and "Spot list price" in err
    # the same command again re-attaches: the choices are part of the spec it matches
    code, out, err = vertex_train(dataset, "spot_1", "--spot", "--replicas", "2", "--kms-key", KEY)
    assert code == 0 and "already submitted" in out and len(google.calls("POST", JOBS)) == 1


def test_the_pipeline_carries_the_key_and_the_scheduling_to_its_jobs(tmp_path):
    pytest.importorskip("kfp")
    code, out, err = launcher("pipeline", "run", "--dry-run", "--pipeline-root", "gs://bucket/root", "--source",
                              "gs://bucket/run", "--spot", "--boot-disk-size-gb", "300", "--kms-key", KEY,
                              "--finetune-dataset", "gs://bucket/real", "--timeout", "12h", cwd=tmp_path)
    assert code == 0, err
    body = json.loads(out[out.index("{"):])         # stdout is the body alone
    assert body["runtimeConfig"]["parameterValues"]["train_timeout"] == "12h"
    assert "for 12 h," in err and "default timeout" not in err
    job = strict(body, "PipelineJob")
    assert job.encryption_spec.kms_key_name == KEY
    from launcher.jobs.capacity import Capacity
    carried = Capacity.from_json(body["runtimeConfig"]["parameterValues"]["capacity"])
    assert carried == Capacity(spot=True, boot_disk_size_gb=300, kms_key=KEY)
    assert "price of its training job: at most $" in err and "Spot list price" in err
    assert "and of its fine-tuning job: the same again" in err


def test_the_pipelines_training_step_sends_the_choices(fake_vertex, google, dataset, monkeypatch):
    from launcher.pipeline import steps
    from launcher.jobs.capacity import Capacity
    states = iter(["JOB_STATE_SUCCEEDED"])
    google.route("GET", JOBS + r"/1000", lambda r: (200, dict(fake_vertex.jobs["1000"], state=next(states))))
    monkeypatch.setattr(steps.time, "sleep", lambda seconds: None)
    capacity = Capacity(spot=True, boot_disk_type="pd-ssd", kms_key=KEY).to_json()
    steps.train_candidate(dataset, job_dir("pipe_spot"), {"max_steps": 9}, "vertex", PROJECT, "us-central1",
                          "img:1", "gpu", "pipe_spot", capacity, "1d")
    body = google.calls("POST", JOBS)[0]["body"]
    assert body["jobSpec"]["scheduling"] == {"strategy": "SPOT", "timeout": "86400s"}
    assert body["encryptionSpec"] == {"kmsKeyName": KEY}
    assert body["jobSpec"]["workerPoolSpecs"][0]["diskSpec"]["bootDiskType"] == "pd-ssd"


def test_the_expected_cost_never_passes_the_ceiling_and_says_where_a_short_timeout_stops_the_job():
    from launcher.jobs import prices, vertex_spec
    from launcher.jobs.capacity import Capacity
    body = {"jobSpec": {"workerPoolSpecs": vertex_spec.worker_pools("gpu"), "scheduling": {"timeout": "3600s"}}}
    ceiling = prices.ceiling(body, "us-central1", Capacity())
    short = prices.expected(body, "us-central1", Capacity(), 2.0, 10000, "runs/m1")
    assert "the job's timeout of 1 h stops it at about step 1800" in short and "no model of 10000 steps" in short
    assert "pass --timeout 7h" in short and ("expected: $%s," % prices.money(ceiling.dollars)) in short
    enough = prices.expected(body, "us-central1", Capacity(), 0.2, 10000, "runs/m1")
    assert enough.startswith("expected: $%s for 10000 steps" % prices.money(ceiling.dollars * 2000 / 3600))
    assert "stops it" not in enough
