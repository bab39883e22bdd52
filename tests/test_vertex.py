"""The launcher's Vertex AI backend: real google-api-python-client, google-auth and google-cloud-storage
against fake services on 127.0.0.1 and the GCS emulator."""
import json
import re

import pytest

from conftest import BUCKET
from fakes import TOKEN
from test_launcher import PROJECT, dataset, job_dir, run  # noqa: F401  (fixtures)

PARENT = "projects/%s/locations/us-central1" % PROJECT
JOBS = r"/v1/%s/customJobs" % PARENT


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch):
    import googleapiclient.http
    monkeypatch.setattr(googleapiclient.http.time, "sleep", lambda seconds: None)


class FakeVertex:
    """customJobs create/get/list/cancel, keeping the jobs it was sent."""

    def __init__(self, google):
        self.jobs = {}
        self.google = google
        google.route("POST", JOBS, self.create)
        google.route("GET", JOBS, self.list)
        google.route("GET", JOBS + r"/(\d+)", self.get)
        google.route("POST", JOBS + r"/(\d+):cancel", self.cancel)

    def create(self, request):
        number = str(1000 + len(self.jobs))
        job = dict(request["body"], name="%s/customJobs/%s" % (PARENT, number), state="JOB_STATE_PENDING",
                   createTime="2026-11-22T08:00:0%dZ" % len(self.jobs))
        job["jobSpec"]["workerPoolSpecs"][0]["diskSpec"] = {"bootDiskType": "pd-ssd", "bootDiskSizeGb": 100}
        self.jobs[number] = job
        return 200, job

    def list(self, request):
        jobs = list(self.jobs.values())
        flt = (request["query"].get("filter") or [""])[0]
        for key, value in re.findall(r'(labels\.\w+|display_name)="([^"]*)"', flt):
            if key == "display_name":
                jobs = [j for j in jobs if j["displayName"] == value]
            else:
                jobs = [j for j in jobs if j.get("labels", {}).get(key.split(".", 1)[1]) == value]
        return 200, {"customJobs": jobs}

    def get(self, request):
        job = self.jobs.get(request["match"].group(1))
        return (200, job) if job else (404, {"error": {"code": 404, "message": "not found"}})

    def cancel(self, request):
        self.jobs[request["match"].group(1)]["state"] = "JOB_STATE_CANCELLING"
        return 200, {}


@pytest.fixture
def fake_vertex(google):
    return FakeVertex(google)


IMAGE = "us-docker.pkg.dev/p/r/synthdet:1"


def vertex_train(dataset, name, *extra):
    return run("train", "--project", PROJECT, "--region", "us-central1", "--image", IMAGE,
               "--dataset", dataset, "--job-dir", job_dir(name), "--job-id", name, *extra)


def pairs_of(args):
    return dict(zip(args[3::2], args[4::2]))


def test_vertex_is_the_default_and_runs_the_projects_image(fake_vertex, google, dataset, cloud):
    code, out, err = vertex_train(dataset, "vtx_1", "--max-steps", 5000)
    assert code == 0, err
    (create,) = google.calls("POST", JOBS)
    assert create["headers"]["authorization"] == "Bearer " + TOKEN
    body = create["body"]
    assert body["displayName"] == "vtx_1" and body["labels"] == {"synthdet_job_id": "vtx_1"}
    assert body["jobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": job_dir("vtx_1")}
    assert set(body["jobSpec"]) == {"workerPoolSpecs", "baseOutputDirectory"}
    (pool,) = body["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "g2-standard-8", "acceleratorType": "NVIDIA_L4",
                                   "acceleratorCount": 1}
    assert pool["replicaCount"] == "1" and "pythonPackageSpec" not in pool
    container = pool["containerSpec"]
    assert container["imageUri"] == IMAGE and container["command"] == ["python", "-m", "trainer"]
    args = container["args"]
    assert args[:3] == ["train", "--dataset", dataset]
    pairs = pairs_of(args)
    assert pairs["--max-steps"] == "5000" and pairs["--train-batch-size"] == "16"
    assert pairs["--num-eval-images"] == "200" and pairs["--fpn-type"] == "nasfpn"
    assert pairs["--backbone"] == "resnet-50" and "--image-size" not in pairs
    assert pairs["--strategy"] == "one_device" and pairs["--expect-accelerator"] == "gpu:1"
    assert pairs["--machine-type"] == "g2-standard-8"
    assert pairs["--init-checkpoint"] == "imagenet"         # a cloud run starts from ImageNet
    # nothing is installed at job start: no package is uploaded
    assert not list(cloud.storage.list_blobs(BUCKET, prefix="models/vtx_1/"))
    assert "submitted Vertex job vtx_1 (id 1000, PREPARING)" in out
    assert "vertex-ai/locations/us-central1/training/1000" in out
    assert "gcloud ai custom-jobs stream-logs 1000 --project %s --region us-central1" % PROJECT in out


def test_the_trainer_args_parse_with_the_trainers_own_cli(fake_vertex, google, dataset):
    """What the job runs must be a command line the trainer accepts, flag for flag."""
    assert vertex_train(dataset, "vtx_cli", "--params-override", "trainer: {steps_per_loop: 50}")[0] == 0
    container = google.calls("POST", JOBS)[0]["body"]["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    from trainer.cli import main as trainer_main
    assert container["args"][0] == "train"
    params = trainer_main.commands["train"].make_context("train", list(container["args"][1:])).params
    assert params["strategy"] == "one_device" and params["expect_accelerator"] == "gpu:1"
    assert params["max_steps"] == 75000 and params["num_eval_images"] == 200
    assert params["params_overrides"] == ('{"trainer": {"steps_per_loop": 50}}',)


@pytest.mark.parametrize("flags, machine, strategy, promise, replicas", [
    (["--gpus", "4"], ("g2-standard-48", "NVIDIA_L4", 4), "mirrored", "gpu:4", ["1"]),
    (["--accelerator", "a100", "--gpus", "2"], ("a2-highgpu-2g", "NVIDIA_TESLA_A100", 2), "mirrored", "gpu:2", ["1"]),
    (["--replicas", "3"], ("g2-standard-8", "NVIDIA_L4", 1), "multi_worker_mirrored", "gpu:1", ["1", "2"]),
])
def test_each_machine_gets_the_strategy_that_uses_it(fake_vertex, google, dataset, flags, machine, strategy,
                                                     promise, replicas):
    code, out, err = vertex_train(dataset, "vtx_m", "--dry-run", *flags)
    assert code == 0, err
    assert not google.calls(path_pattern=r"/v1/.*")
    body = json.loads(out[out.index("{"):out.index("\nThe same with gcloud")])
    pools = body["jobSpec"]["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == replicas
    for pool in pools:
        spec = pool["machineSpec"]
        assert (spec["machineType"], spec["acceleratorType"], spec["acceleratorCount"]) == machine
        pairs = pairs_of(pool["containerSpec"]["args"])
        assert pairs["--strategy"] == strategy and pairs["--expect-accelerator"] == promise


def test_a_tpu_is_refused_unless_you_bring_its_image(fake_vertex, google, dataset, tmp_path):
    code, _, err = vertex_train(dataset, "vtx_tpu", "--accelerator", "tpu")
    assert code == 2 and "--accelerator tpu is refused" in err and "TPU runtime" in err
    assert not google.calls("POST", JOBS)
    pools = tmp_path / "tpu.yaml"
    pools.write_text("- machineSpec: {machineType: ct5lp-hightpu-4t, acceleratorType: TPU_V5_LITEPOD, "
                     "acceleratorCount: 4}\n  replicaCount: '1'\n")
    code, _, err = vertex_train(dataset, "vtx_tpu", "--worker-pool-spec-file", pools)
    assert code == 2 and "refused" in err and not google.calls("POST", JOBS)
    pools.write_text("- machineSpec: {machineType: ct5lp-hightpu-4t, acceleratorType: TPU_V5_LITEPOD, "
                     "acceleratorCount: 4}\n  replicaCount: '1'\n  containerSpec: {imageUri: my/tpu-image:1}\n")
    code, _, err = vertex_train(dataset, "vtx_tpu", "--worker-pool-spec-file", pools)
    assert code == 0, err
    (pool,) = google.calls("POST", JOBS)[0]["body"]["jobSpec"]["workerPoolSpecs"]
    assert pool["containerSpec"]["imageUri"] == "my/tpu-image:1"
    pairs = pairs_of(pool["containerSpec"]["args"])
    assert pairs["--strategy"] == "tpu" and pairs["--expect-accelerator"] == "tpu:4"


def test_job_options_land_where_the_custom_job_wants_them(fake_vertex, google, dataset):
    tensorboard = "projects/%s/locations/us-central1/tensorboards/42" % PROJECT
    account = "trainer@%s.iam.gserviceaccount.com" % PROJECT
    code, _, err = vertex_train(dataset, "vtx_opts", "--service-account", account,
                                "--network", "projects/123/global/networks/vpc1", "--timeout", "3h",
                                "--labels", "team=vision", "--labels", "cost-center=42",
                                "--tensorboard", tensorboard, "--enable-web-access")
    assert code == 0, err
    body = google.calls("POST", JOBS)[0]["body"]
    assert body["labels"] == {"team": "vision", "cost-center": "42", "synthdet_job_id": "vtx_opts"}
    spec = body["jobSpec"]
    assert spec["serviceAccount"] == account and spec["network"] == "projects/123/global/networks/vpc1"
    assert spec["scheduling"] == {"timeout": "10800s"} and spec["tensorboard"] == tensorboard
    assert spec["enableWebAccess"] is True
    # every field parses strictly against the aiplatform v1 CustomJob message
    from google.protobuf import json_format
    try:
        from google.cloud.aiplatform_v1.types import custom_job
    except ImportError:
        pytest.skip("google-cloud-aiplatform is not installed")
    json_format.ParseDict(body, custom_job.CustomJob.pb(custom_job.CustomJob()), ignore_unknown_fields=False)


@pytest.mark.parametrize("flags, message", [
    (["--timeout", "3 hours"], "--timeout takes a duration"),
    (["--timeout", "0"], "--timeout must be positive"),
    (["--labels", "Team=x"], "--labels takes key=value"),
    (["--tensorboard", "projects/p/locations/r/tensorboards/1"], "--tensorboard needs --service-account"),
    (["--network", "vpc1"], "--network takes projects/"),
    (["--service-account", "me"], "--service-account takes an email"),
    (["--arg", "learning_rate_decay_type=cosine"], "--arg is the built-in algorithm's"),
    (["--params-override", "[1, 2]"], "must be a mapping"),
    (["--params-override", "missing.yaml"], "missing.yaml: No such file"),
    (["--params-override", "{task: {model: {nope: 1}}}"], "does not fit Model Garden's config"),
    (["--init-checkpoint", "/home/me/ckpt-1"], "--init-checkpoint must be imagenet, none or a gs://"),
    (["--backbone", "mobilenet", "--init-checkpoint", "imagenet"], "no ImageNet checkpoint for --backbone mobilenet"),
    (["--network", "projects/1/global/networks/vpc1\n"], "--network takes projects/"),
    (["--service-account", "me@p.iam.gserviceaccount.com\n"], "--service-account takes an email"),
    (["--reservation", "projects/p/zones/us-central1-a/reservations/r\n"], "--reservation"),
    (["--persistent-resource", "pool\n"], "--persistent-resource"),
    (["--kms-key", "projects/p/locations/us-central1/keyRings/k/cryptoKeys/c\n"], "--kms-key"),
    (["--labels", "team=x\n"], "--labels takes key=value"),
    (["--kms-key", ""], "is empty (an unset shell variable?)"),
    (["--reservation", ""], "is empty (an unset shell variable?)"),
    (["--persistent-resource", ""], "is empty (an unset shell variable?)"),
    (["--flex-start", "--max-wait", ""], "is empty (an unset shell variable?)"),
])
def test_bad_options_are_refused_before_anything_is_sent(fake_vertex, google, dataset, flags, message):
    code, _, err = vertex_train(dataset, "vtx_bad", *flags)
    if message is None:      # Model Garden's own config refuses unknown keys inside the job, but the
        assert code == 0     # mapping itself goes through untouched
        return
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not google.calls("POST", JOBS)


def test_overrides_reach_the_trainer_as_the_mapping(fake_vertex, google, dataset, tmp_path):
    override_file = tmp_path / "head.yaml"
    override_file.write_text("task:\n  model:\n    head: {num_filters: 64}\n")
    code, _, err = vertex_train(dataset, "vtx_ovr", "--params-override", '{"trainer": {"steps_per_loop": 25}}',
                                "--params-override", override_file)
    assert code == 0, err
    args = google.calls("POST", JOBS)[0]["body"]["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
    overrides = [json.loads(args[i + 1]) for i, a in enumerate(args) if a == "--params-override"]
    assert overrides == [{"trainer": {"steps_per_loop": 25}}, {"task": {"model": {"head": {"num_filters": 64}}}}]


@pytest.mark.parametrize("failure", ["dropped", "503"])
def test_a_create_whose_answer_is_lost_starts_one_job(fake_vertex, google, dataset, monkeypatch, failure):
    import launcher.cloud.google_api
    monkeypatch.setattr(launcher.cloud.google_api.time, "sleep", lambda seconds: None)
    answered = []

    def create_then_lose_the_answer(request):
        fake_vertex.create(request)
        if not answered:
            answered.append(False)
            return None if failure == "dropped" else (503, {"error": {"code": 503, "message": "backend error"}})
        return fake_vertex.create(request)

    google.route("POST", JOBS, create_then_lose_the_answer)
    code, out, err = vertex_train(dataset, "vtx_lost")
    assert code == 0, err
    assert len(fake_vertex.jobs) == 1, "a second paid job was started"
    assert len(google.calls("POST", JOBS)) == 1
    assert "submitted Vertex job vtx_lost (id 1000" in out


def test_a_create_that_keeps_failing_says_so(fake_vertex, google, dataset, monkeypatch):
    import launcher.cloud.google_api
    monkeypatch.setattr(launcher.cloud.google_api.time, "sleep", lambda seconds: None)
    google.route("POST", JOBS, lambda r: (503, {"error": {"code": 503, "message": "backend error"}}))
    code, _, err = vertex_train(dataset, "vtx_down")
    assert code == 1 and "after 5 attempts: HTTP 503: backend error" in err
    assert len(google.calls("POST", JOBS)) == 5 and not fake_vertex.jobs


def test_a_retried_vertex_submission_finds_its_job(fake_vertex, google, dataset):
    assert vertex_train(dataset, "vtx_2")[0] == 0
    code, out, err = vertex_train(dataset, "vtx_2")
    assert code == 0, err
    assert len(google.calls("POST", JOBS)) == 1
    assert "already submitted, not started again: Vertex job vtx_2 (id 1000" in out
    code, _, err = vertex_train(dataset, "vtx_2", "--max-steps", 10)
    assert code == 2 and "already exists with another spec" in err
    assert len(google.calls("POST", JOBS)) == 1


def test_vertex_dry_run_sends_and_uploads_nothing(fake_vertex, google, dataset, cloud):
    code, out, err = vertex_train(dataset, "vtx_dry", "--dry-run", "--accelerator", "a100")
    assert code == 0, err
    assert not google.calls(path_pattern=r"/v1/.*")
    assert not list(cloud.storage.list_blobs(BUCKET, prefix="models/vtx_dry/"))
    body = json.loads(out[out.index("{"):out.index("\nThe same with gcloud")])
    (pool,) = body["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"]["acceleratorType"] == "NVIDIA_TESLA_A100"
    assert pool["containerSpec"]["imageUri"] == IMAGE
    assert "gcloud ai custom-jobs create \\\n    --region=us-central1 \\\n    --display-name=vtx_dry" in out
    assert "# job.yaml" in out and "imageUri: %s" % IMAGE in out


def test_vertex_needs_the_image(fake_vertex, google, dataset, monkeypatch):
    monkeypatch.delenv("SYNTHDET_IMAGE", raising=False)
    code, _, err = run("train", "--project", PROJECT, "--dataset", dataset, "--job-dir", job_dir("noimg"),
                       "--job-id", "noimg")
    assert code == 2 and "pass --image" in err and not google.calls("POST", JOBS)


def test_vertex_own_worker_pools(fake_vertex, google, dataset, tmp_path):
    pools = tmp_path / "pools.json"
    pools.write_text(json.dumps([{"machineSpec": {"machineType": "n1-standard-8", "acceleratorType": "NVIDIA_TESLA_T4",
                                                  "acceleratorCount": 2}, "replicaCount": "1"}]))
    code, _, err = vertex_train(dataset, "vtx_3", "--worker-pool-spec-file", pools, "--max-steps", 7)
    assert code == 0, err
    (pool,) = google.calls("POST", JOBS)[0]["body"]["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"]["acceleratorCount"] == 2 and pool["containerSpec"]["imageUri"] == IMAGE
    pairs = pairs_of(pool["containerSpec"]["args"])
    assert pairs["--strategy"] == "mirrored" and pairs["--expect-accelerator"] == "gpu:2"


def test_the_pipeline_step_trains_on_vertex_through_the_library(fake_vertex, google, dataset, monkeypatch):
    """launcher.pipeline.steps calls the backend directly: no CLI, and its override reaches the job as a mapping."""
    from launcher.pipeline import steps
    states = iter(["JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"])
    google.route("GET", JOBS + r"/1000", lambda r: (200, dict(fake_vertex.jobs["1000"], state=next(states))))
    monkeypatch.setattr(steps.time, "sleep", lambda seconds: None)
    import launcher.jobs.training
    monkeypatch.setattr(launcher.jobs.training.time, "sleep", lambda seconds: None)
    seen = []
    out = steps.train_on_vertex(dataset, job_dir("pipe"), {"max_steps": 9, "backbone": "mobilenet",
                                                           "params_overrides": ["trainer: {steps_per_loop: 3}"]},
                                PROJECT, "us-central1", IMAGE, job_id="pipe_1", on_state=lambda j: seen.append(j.state))
    assert out == job_dir("pipe") + "/checkpoints" and seen == ["RUNNING", "SUCCEEDED"]
    args = google.calls("POST", JOBS)[0]["body"]["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"]
    assert pairs_of(args)["--max-steps"] == "9" and pairs_of(args)["--backbone"] == "mobilenet"
    assert "--init-checkpoint" not in args      # no published ImageNet checkpoint for mobilenet
    assert json.loads(args[args.index("--params-override") + 1]) == {"trainer": {"steps_per_loop": 3}}


def test_the_pipeline_steps_vertex_job_runs_in_the_network_and_as_the_account_given(fake_vertex, google, dataset,
                                                                                   monkeypatch):
    from launcher.pipeline import steps
    google.route("GET", JOBS + r"/1000", lambda r: (200, dict(fake_vertex.jobs["1000"], state="JOB_STATE_SUCCEEDED")))
    network, account = "projects/123/global/networks/vpc", "trainer@%s.iam.gserviceaccount.com" % PROJECT
    steps.train_candidate(dataset, job_dir("pipe_vpc"), {"max_steps": 9}, "vertex", PROJECT, "us-central1", IMAGE,
                          "gpu", "pipe_vpc_1", "{}", "", account, network)
    spec = google.calls("POST", JOBS)[0]["body"]["jobSpec"]
    assert spec["network"] == network and spec["serviceAccount"] == account


def test_vertex_status_wait_cancel_and_list(fake_vertex, google, dataset):
    assert vertex_train(dataset, "vtx_4")[0] == 0
    states = iter(["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_FAILED"])

    def get(request):
        job = dict(fake_vertex.jobs["1000"], state=next(states))
        if job["state"] == "JOB_STATE_FAILED":
            job["error"] = {"code": 3, "message": "trainer exited with 1"}
        return 200, job

    code, out, _ = run("status", "vtx_4", "--project", PROJECT)
    assert code == 0 and "job vtx_4 (id 1000): PREPARING" in out      # found by its --job-id name
    google.route("GET", JOBS + r"/1000", get)
    code, out, err = run("wait", "1000", "--backend", "vertex", "--project", PROJECT, "--interval", 0)
    assert code == 1
    assert [line.split("job 1000: ")[1] for line in err.splitlines() if "job 1000: " in line] == [
        "PREPARING", "RUNNING", "FAILED"]
    assert "ended FAILED: trainer exited with 1" in err
    code, out, _ = run("cancel", "%s/customJobs/1000" % PARENT, "--backend", "vertex", "--project", PROJECT)
    assert code == 0 and google.calls("POST", JOBS + r"/1000:cancel")
    code, out, _ = run("list", "--backend", "vertex", "--project", PROJECT)
    assert code == 0 and "vtx_4 (id 1000)" in out and "CANCELLING" in out
    code, _, err = run("status", "no_such_job", "--backend", "vertex", "--project", PROJECT)
    assert code == 1 and "no Vertex custom job named no_such_job" in err


def test_vertex_logs_come_from_cloud_logging_by_the_numeric_id(fake_vertex, google, dataset):
    assert vertex_train(dataset, "vtx_5")[0] == 0
    listed = []

    def entries(request):
        listed.append(request["body"])
        if request["body"].get("pageToken") == "p2":
            return 200, {"entries": [{"insertId": "b", "timestamp": "2026-11-22T08:01:00Z", "textPayload": "two"}]}
        return 200, {"entries": [{"insertId": "a", "timestamp": "2026-11-22T08:00:00Z", "textPayload": "one"}],
                     "nextPageToken": "p2"}

    google.route("POST", r"/v2/entries:list", entries)
    code, out, err = run("logs", "vtx_5", "--project", PROJECT)
    assert code == 0, err
    assert [line.split(" ", 2)[2] for line in out.strip().splitlines()] == ["one", "two"]
    assert listed[0]["filter"] == 'resource.type="ml_job" AND resource.labels.job_id="1000"'


def test_ml_v1_refusal_names_the_vertex_backend(google, dataset):
    google.route("POST", r"/v1/projects/%s/jobs" % PROJECT,
                 lambda r: (403, {"error": {"code": 403, "message": "AI Platform Training has been shut down"}}))
    code, _, err = run("train", "--backend", "ml", "--project", PROJECT, "--dataset", dataset, "--job-dir", job_dir("old"),
                       "--job-id", "old_1")
    assert code == 1 and "has been shut down" in err and "--backend vertex" in err


def test_a_job_that_ended_failed_or_cancelled_is_tried_again_under_a_derived_id(fake_vertex, google, dataset):
    assert vertex_train(dataset, "vtx_f")[0] == 0
    fake_vertex.jobs["1000"]["state"] = "JOB_STATE_FAILED"
    fake_vertex.jobs["1000"]["error"] = {"message": "out of stock"}
    code, out, err = vertex_train(dataset, "vtx_f")
    assert code == 0, err
    assert "job vtx_f ended FAILED (out of stock); started attempt vtx_f_attempt2" in out
    creates = google.calls("POST", JOBS)
    assert [c["body"]["displayName"] for c in creates] == ["vtx_f", "vtx_f_attempt2"]
    assert creates[1]["body"]["labels"]["synthdet_job_id"] == "vtx_f_attempt2"
    assert creates[1]["body"]["jobSpec"] == creates[0]["body"]["jobSpec"]     # resumes from the same job dir
    fake_vertex.jobs["1001"]["state"] = "JOB_STATE_SUCCEEDED"
    code, out, _ = vertex_train(dataset, "vtx_f")
    assert code == 0 and "already submitted, not started again: Vertex job vtx_f_attempt2" in out
    assert len(google.calls("POST", JOBS)) == 2
    fake_vertex.jobs["1001"]["state"] = "JOB_STATE_CANCELLED"
    code, out, _ = vertex_train(dataset, "vtx_f")
    assert code == 0 and "started attempt vtx_f_attempt3" in out and len(google.calls("POST", JOBS)) == 3


def test_the_pipelines_train_step_records_its_attempts(fake_vertex, google, dataset, monkeypatch, tmp_path):
    from launcher.pipeline import steps
    monkeypatch.setattr(steps.time, "sleep", lambda seconds: None)
    import launcher.jobs.training
    monkeypatch.setattr(launcher.jobs.training.time, "sleep", lambda seconds: None)
    run_dir = job_dir("piperun")
    def fails(request):             # every job this test starts runs out of stock
        job = fake_vertex.jobs[request["match"].group(1)]
        job["state"] = "JOB_STATE_FAILED"
        return 200, job
    google.route("GET", JOBS + r"/(\d+)", fails)
    for _ in range(2):
        with pytest.raises(steps.StepFailed, match="ended FAILED"):
            steps.train_on_vertex(dataset, run_dir + "/candidate", {"max_steps": 9, "backbone": "mobilenet"},
                                  PROJECT, "us-central1", IMAGE, job_id="piperun_train")
    from tfproc import fsutil
    attempts = fsutil.read_json(run_dir + "/steps/candidate-attempts.json")["attempts"]
    assert [a["job"] for a in attempts] == ["piperun_train", "piperun_train_attempt2"]


def test_a_dry_run_needs_no_account(monkeypatch, tmp_path, dataset):
    """No credentials and no project: the request is printed, with the checks that could not be made."""
    from conftest import convert
    from tfproc import sample
    sample.make_run(str(tmp_path / "run"), app_params=1, instances=1, frames=4, width=64, height=48, seed=2)
    assert convert("--source", tmp_path / "run", "--eval-pct", 50, "--output", tmp_path / "out") == 0
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    code, out, err = run("train", "--image", IMAGE, "--dataset", "gs://b/out", "--job-dir", "gs://b/model",
                         "--job-id", "look", "--dry-run")
    assert code == 0, err
    body = json.loads(out[out.index("{"):out.index("\nThe same with gcloud")])
    assert body["displayName"] == "look" and "projects/PROJECT/locations/us-central1/customJobs" in out
    assert "not checked: no Google credentials: gs://b/out/summary.json was not read" in out
    assert "not checked: no Google credentials: whether gs://b/model already holds files was not checked" in out
    code, out, err = run("train", "--image", IMAGE, "--dataset", tmp_path / "out", "--job-dir", "gs://b/model",
                         "--job-id", "look", "--dry-run", "--num-eval-images", 99)
    assert code == 2 and "more than the" in err          # the local dataset was read for the checks
    code, out, err = run("train", "--image", IMAGE, "--dataset", tmp_path / "out", "--job-dir", "gs://b/model",
                         "--job-id", "look", "--dry-run")
    assert code == 0, err
    assert "it was read from disk here, but a Vertex job reads only gs://" in out
    code, _, err = run("train", "--image", IMAGE, "--dataset", "gs://b/out", "--job-dir", "gs://b/model",
                       "--job-id", "look")
    assert code == 2 and "pass --project" in err


def test_a_command_whose_extra_is_missing_says_which(tmp_path):
    import subprocess
    import sys
    blocked = ("import sys; sys.modules['kfp'] = None; sys.argv = ['launcher', 'pipeline', 'compile', '--output', "
               "'p.yaml']; from launcher.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", blocked], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert 'this needs the "pipeline" extra (kfp is not installed): bash scripts/install.sh pipeline' in done.stderr
    blocked = ("import sys; sys.modules['official'] = None; sys.argv = ['trainer', 'export', '--model-dir', 'm']; "
               "from trainer.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", blocked], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and 'the trainer needs the "train" extra' in done.stderr


@pytest.mark.parametrize("run_id", ["Synthdet_Run", "x y", "a" * 129, "", "1night", "-night", "night\n"])
def test_pipeline_run_ids_are_checked_against_vertexs_rule(google, run_id):
    code, _, err = run("pipeline", "run", "--project", PROJECT, "--pipeline-root", "gs://b/p", "--source", "gs://b/r",
                       "--run-id", run_id, "--dry-run")
    assert code == 2 and "not a valid pipeline run id" in err and not google.calls(path_pattern=r"/v1/.*")
