"""The launcher's real clients (requests, google-api-python-client, google-auth, google-cloud-storage)
against fake services on 127.0.0.1."""
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import BUCKET
from fakes import TOKEN, FakeServer
from launcher.cli import main

PROJECT = "test-project"
USIM_TOKEN = "usim-secret-token-123"


def run(*args, env=None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch):
    """googleapiclient sleeps up to 2**n seconds between retries; the tests need not wait."""
    import googleapiclient.http
    monkeypatch.setattr(googleapiclient.http.time, "sleep", lambda seconds: None)


# -- Unity Simulation transfer ------------------------------------------------------------------

@pytest.fixture
def usim(tmp_path, monkeypatch):
    monkeypatch.setenv("USIM_HOME", str(tmp_path / "usim"))
    monkeypatch.delenv("USIM_ACCESS_TOKEN", raising=False)
    monkeypatch.delenv("USIM_PROJECT_ID", raising=False)
    with FakeServer() as server:
        monkeypatch.setenv("USIM_API_URL", server.url)
        yield server


def usim_args(*extra):
    return ["--token", USIM_TOKEN, "--project-id", "unity-proj", *extra]


def test_transfer_sends_the_documented_put_and_waits_for_success(usim):
    polls = iter(["running", "running", "success"])
    usim.route("PUT", r"/v1/projects/unity-proj/data_transfer",
               lambda r: (200, {"id": "tr-1", "status": "running"}))
    usim.route("GET", r"/v1/projects/unity-proj/data_transfer/tr-1",
               lambda r: (200, {"id": "tr-1", "status": next(polls)}))
    code, out, err = run("transfer", "--run-definition-id", "El64GVP", "--run-execution-id", "5M6wq80",
                         "--bucket", "gs://my-bucket", "--wait", "--interval", 0, *usim_args())
    assert code == 0, err
    put = usim.calls("PUT")[0]
    assert put["body"] == {"destination_bucket": "my-bucket", "run_definition_id": "El64GVP",
                           "run_execution_id": "5M6wq80"}
    assert put["headers"]["authorization"] == "Bearer " + USIM_TOKEN
    assert put["headers"]["content-type"] == "application/json"
    assert len(usim.calls("GET")) == 3
    assert "transfer tr-1: success" in out
    assert "gs://my-bucket/projects/unity-proj/run_executions/urn:run_definitions:El64GVP/urn:run_executions:5M6wq80" in out
    assert USIM_TOKEN not in out + err


def test_transfer_token_and_project_from_the_usim_files(usim, tmp_path):
    (tmp_path / "usim").mkdir()
    (tmp_path / "usim" / "token.json").write_text(json.dumps({"access_token": "from-file", "refresh_token": "r"}))
    (tmp_path / "usim" / "project_id.txt").write_text("file-proj\n")
    usim.route("PUT", r"/v1/projects/file-proj/data_transfer",
               lambda r: (200, {"data_transfer_id": "tr-9", "status": "running"}))
    code, out, err = run("transfer", "--run-definition-id", "D", "--run-execution-id", "E", "--bucket", "b")
    assert code == 0, err
    assert usim.calls("PUT")[0]["headers"]["authorization"] == "Bearer from-file"
    assert "transfer tr-9: running" in out and "transfer-status tr-9" in out


def test_transfer_retries_503_then_succeeds(usim):
    answers = iter([(503, {"message": "busy"}), (200, {"transfer_id": "tr-2", "status": "running"})])
    usim.route("PUT", r"/v1/projects/unity-proj/data_transfer", lambda r: next(answers))
    code, out, err = run("transfer", "--run-definition-id", "D", "--run-execution-id", "E", "--bucket", "b",
                         *usim_args())
    assert code == 0, err
    assert len(usim.calls("PUT")) == 2 and "tr-2" in out


def test_transfer_401_says_to_refresh_the_token(usim):
    usim.route("PUT", r"/v1/projects/unity-proj/data_transfer", lambda r: (401, {"message": "expired"}))
    code, out, err = run("transfer", "--run-definition-id", "D", "--run-execution-id", "E", "--bucket", "b",
                         *usim_args())
    assert code == 1
    assert "expired or wrong" in err and "usim refresh auth" in err
    assert USIM_TOKEN not in out + err and "Traceback" not in err


def test_transfer_404_names_the_ids(usim):
    usim.route("PUT", r"/v1/projects/unity-proj/data_transfer", lambda r: (404, {"message": "no such run"}))
    code, _, err = run("transfer", "--run-definition-id", "DEF1", "--run-execution-id", "EXE1", "--bucket", "b",
                       *usim_args())
    assert code == 1 and "DEF1" in err and "EXE1" in err and "404" in err


def test_transfer_failure_and_timeout_exit_non_zero(usim):
    usim.route("PUT", r"/v1/projects/unity-proj/data_transfer", lambda r: (200, {"id": "tr-3", "status": "running"}))
    usim.route("GET", r"/v1/projects/unity-proj/data_transfer/tr-3",
               lambda r: (200, {"id": "tr-3", "status": "failed", "message": "bucket not writable"}))
    code, _, err = run("transfer", "--run-definition-id", "D", "--run-execution-id", "E", "--bucket", "b",
                       "--wait", "--interval", 0, *usim_args())
    assert code == 1 and "failed: bucket not writable" in err
    usim.route("GET", r"/v1/projects/unity-proj/data_transfer/tr-3", lambda r: (200, {"id": "tr-3", "status": "running"}))
    code, _, err = run("transfer", "--run-definition-id", "D", "--run-execution-id", "E", "--bucket", "b",
                       "--wait", "--interval", 0.01, "--timeout", 0, *usim_args())
    assert code == 1 and "still running" in err


def test_transfer_status_and_missing_token(usim):
    usim.route("GET", r"/v1/projects/unity-proj/data_transfer/tr-4", lambda r: (200, {"id": "tr-4", "status": "success"}))
    code, out, _ = run("transfer-status", "tr-4", *usim_args())
    assert code == 0 and json.loads(out) == {"id": "tr-4", "status": "success"}
    code, _, err = run("transfer-status", "tr-4", "--project-id", "p")
    assert code == 2 and "no Unity Simulation token" in err


# -- training -------------------------------------------------------------------------------------

DATASET = "runs/urn:run_executions:X/output"


@pytest.fixture
def dataset(cloud):
    bucket = cloud.storage.bucket(BUCKET)
    base = "gs://%s/%s" % (BUCKET, DATASET)
    summary = {"num_classes": 63, "splits": {
        "train": {"images": 800, "pattern": base + "/train/*.tfrecord"},
        "eval": {"images": 250, "pattern": base + "/eval/*.tfrecord"}}}
    bucket.blob(DATASET + "/summary.json").upload_from_string(json.dumps(summary))
    bucket.blob(DATASET + "/label_map.pbtxt").upload_from_string(
        "".join("item {\n  id: %d\n  name: 'c%d'\n}\n" % (i, i) for i in range(1, 64)))
    return base


def job_dir(name):
    return "gs://%s/models/%s" % (BUCKET, name)


def accept_jobs(google, state="QUEUED"):
    google.route("POST", r"/v1/projects/%s/jobs" % PROJECT,
                 lambda r: (200, dict(r["body"], state=state)))


def test_train_submits_the_seeds_job(google, dataset):
    accept_jobs(google)
    code, out, err = run("train", "--backend", "ml", "--project", PROJECT, "--dataset", dataset, "--job-dir", job_dir("m1"),
                         "--job-id", "synthdet_test_1", "--arg", "learning_rate_decay_type=cosine")
    assert code == 0, err
    create = google.calls("POST", r"/v1/projects/test-project/jobs")
    assert len(create) == 1
    assert create[0]["headers"]["authorization"] == "Bearer " + TOKEN
    body = create[0]["body"]
    assert body["jobId"] == "synthdet_test_1"
    training = body["trainingInput"]
    assert training["region"] == "us-central1" and training["jobDir"] == job_dir("m1")
    assert training["masterType"] == "n1-standard-16" and training["workerType"] == "cloud_tpu"
    assert training["masterConfig"] == {"imageUri": "gcr.io/cloud-ml-algos/image_object_detection:latest",
                                        "acceleratorConfig": {"type": "NVIDIA_TESLA_P100", "count": 1}}
    assert training["workerConfig"]["acceleratorConfig"] == {"type": "TPU_V2", "count": 8}
    assert training["workerCount"] == 1 and training["scaleTier"] == "CUSTOM"
    assert training["args"] == [
        "--training_data_path=%s/train/*.tfrecord" % dataset,
        "--validation_data_path=%s/eval/*.tfrecord" % dataset,
        "--train_batch_size=16", "--num_eval_images=200", "--train_steps_per_eval=2000", "--max_steps=75000",
        "--warmup_learning_rate=0.01", "--warmup_steps=500", "--initial_learning_rate=0.001",
        "--image_size=960,1280", "--fpn_type=nasfpn", "--aug_scale_min=0.8", "--aug_scale_max=1.2",
        "--num_classes=63", "--learning_rate_decay_type=cosine"]
    assert "submitted job synthdet_test_1" in out
    assert "console.cloud.google.com/ai-platform/jobs/synthdet_test_1?project=test-project" in out
    assert "gcloud ai-platform jobs stream-logs synthdet_test_1" in out


def test_train_on_an_output_converted_locally_then_uploaded(google, cloud, tmp_path):
    """The seed's real-photo flow: convert on this machine, `gsutil -m rsync` the output, train."""
    bucket = cloud.storage.bucket(BUCKET)
    summary = {"num_classes": 3, "splits": {
        "train": {"images": 120, "pattern": "/tmp/real/output/train/*.tfrecord"},
        "eval": {"images": 47, "pattern": "/tmp/real/output/eval/*.tfrecord"}}}
    bucket.blob("real/output/summary.json").upload_from_string(json.dumps(summary))
    bucket.blob("real/output/label_map.pbtxt").upload_from_string(
        'item {\n  name: "a \\"b\\" } c"\n  id: 1\n}\nitem {\n  name: "d"\n  id: 3\n}\n')
    accept_jobs(google)
    dataset = "gs://%s/real/output" % BUCKET
    code, _, err = run("train", "--backend", "ml", "--project", PROJECT, "--dataset", dataset, "--job-dir", job_dir("real1"),
                       "--job-id", "real_1")
    assert code == 0, err
    args = google.calls("POST")[-1]["body"]["trainingInput"]["args"]
    assert "--training_data_path=%s/train/*.tfrecord" % dataset in args
    assert "--validation_data_path=%s/eval/*.tfrecord" % dataset in args
    assert "--num_eval_images=47" in args       # the seed's 200, capped at what there is
    code, _, err = run("train", "--backend", "ml", "--project", PROJECT, "--dataset", dataset, "--job-dir", job_dir("real2"),
                       "--job-id", "real_2", "--num-eval-images", 200)
    assert code == 2 and "num_eval_images 200 is more than the 47 validation images" in err


def test_train_with_gpu_a_config_file_and_overrides(google, dataset, tmp_path):
    accept_jobs(google)
    code, _, err = run("train", "--backend", "ml", "--project", PROJECT, "--dataset", dataset, "--job-dir", job_dir("m2"),
                       "--job-id", "gpu_job", "--accelerator", "gpu", "--max-steps", 100, "--num-classes", 70,
                       "--num-eval-images", 0, "--image-size", "480,640")
    assert code == 0, err
    training = google.calls("POST")[-1]["body"]["trainingInput"]
    assert "workerType" not in training and training["masterConfig"]["acceleratorConfig"]["type"] == "NVIDIA_TESLA_P100"
    assert "--max_steps=100" in training["args"] and "--num_classes=70" in training["args"]
    assert "--image_size=480,640" in training["args"] and "--num_eval_images=0" in training["args"]

    config = tmp_path / "config.yaml"
    config.write_text("""trainingInput:
  scaleTier: CUSTOM
  masterType: n1-standard-16
  masterConfig:
    imageUri: gcr.io/cloud-ml-algos/image_object_detection:latest
    acceleratorConfig:
      type: NVIDIA_TESLA_P100
      count: 1
  workerType:  cloud_tpu
  workerConfig:
    imageUri: gcr.io/cloud-ml-algos/image_object_detection:latest
    acceleratorConfig:
      type: TPU_V2
      count: 8
  workerCount: 1
""")
    code, _, err = run("train", "--backend", "ml", "--project", PROJECT, "--dataset", dataset, "--job-dir", job_dir("m3"),
                       "--job-id", "from_config", "--config", config, "--region", "europe-west4")
    assert code == 0, err
    training = google.calls("POST")[-1]["body"]["trainingInput"]
    assert training["workerConfig"]["acceleratorConfig"] == {"type": "TPU_V2", "count": 8}
    assert training["region"] == "europe-west4"


def test_train_retries_503_and_is_idempotent_on_409(google, dataset):
    answers = iter([(503, {"error": {"code": 503, "message": "backend busy"}})])
    created = {}

    def create(request):
        try:
            return next(answers)
        except StopIteration:
            if request["body"]["jobId"] in created:
                return 409, {"error": {"code": 409, "message": "Job already exists"}}
            created[request["body"]["jobId"]] = dict(request["body"], state="QUEUED")
            return 200, created[request["body"]["jobId"]]

    google.route("POST", r"/v1/projects/%s/jobs" % PROJECT, create)
    google.route("GET", r"/v1/projects/%s/jobs/(\w+)" % PROJECT,
                 lambda r: (200, created[r["match"].group(1)]))
    args = ["train", "--backend", "ml", "--project", PROJECT, "--dataset", dataset, "--job-dir", job_dir("m4"), "--job-id", "again"]
    code, out, err = run(*args)
    assert code == 0, err
    assert len(google.calls("POST", r"/v1/projects/test-project/jobs")) == 2   # the 503, then the job
    code, out, err = run(*args)
    assert code == 0 and "already submitted" in out
    code, out, err = run(*args, "--max-steps", 5)
    assert code == 2 and "already exists" in err and "another --job-id" in err


@pytest.mark.parametrize("extra, message", [
    (["--job-id", "9starts_with_digit"], "job id '9starts_with_digit' is not valid"),
    (["--job-id", "has-dash"], "is not valid"),
    (["--job-dir", "/local/model"], "--job-dir must be a gs:// folder"),
    (["--num-classes", 10], "num_classes 10 does not cover class id 63"),
    (["--num-eval-images", 251], "num_eval_images 251 is more than the 250 validation images"),
    (["--image-size", "960x1280"], 'image_size must be "height,width"'),
    (["--image-size", "0,1280"], 'image_size must be "height,width"'),
    (["--arg", "novalue"], "--arg takes name=value"),
])
def test_train_checks_before_sending(google, dataset, extra, message):
    args = {"--job-dir": job_dir("m5"), "--job-id": "ok_id"}
    flat = []
    for i in range(0, len(extra), 2):
        args.pop(extra[i], None)
        flat += [extra[i], extra[i + 1]]
    for name, value in args.items():
        flat += [name, value]
    code, out, err = run("train", "--backend", "ml", "--project", PROJECT, "--dataset", dataset, *flat)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not google.calls("POST", r"/v1/.*")


def test_train_refuses_a_job_dir_with_files_unless_resume(google, dataset, cloud):
    cloud.storage.bucket(BUCKET).blob("models/used/model.ckpt-100.index").upload_from_string(b"x")
    accept_jobs(google)
    code, _, err = run("train", "--backend", "ml", "--project", PROJECT, "--dataset", dataset, "--job-dir", job_dir("used"),
                       "--job-id", "resumed")
    assert code == 2 and "already holds files" in err and "--resume" in err
    assert not google.calls("POST", r"/v1/.*")
    code, _, err = run("train", "--backend", "ml", "--project", PROJECT, "--dataset", dataset, "--job-dir", job_dir("used"),
                       "--job-id", "resumed", "--resume", "--max-steps", 90000)
    assert code == 0, err


def test_train_dry_run_sends_nothing(google, dataset):
    code, out, err = run("train", "--backend", "ml", "--project", PROJECT, "--dataset", dataset, "--job-dir", job_dir("m6"),
                         "--job-id", "dry", "--dry-run")
    assert code == 0, err
    assert not google.calls(path_pattern=r"/v1/.*")
    body = json.loads(out.split("(not sent):\n", 1)[1].split("\n\nThe same with gcloud", 1)[0])
    assert body["jobId"] == "dry" and "--num_classes=63" in body["trainingInput"]["args"]
    assert "gcloud ai-platform jobs submit training dry" in out and "--config=config.yaml" in out
    assert "workerType: cloud_tpu" in out


def test_train_without_credentials_says_how_to_get_them(dataset, monkeypatch, tmp_path):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    code, _, err = run("train", "--backend", "ml", "--project", PROJECT, "--training-data", "gs://b/t/*.tfrecord",
                       "--validation-data", "gs://b/e/*.tfrecord", "--num-classes", 3,
                       "--job-dir", job_dir("m7"), "--job-id", "nocreds")
    assert code == 1 and "gcloud auth application-default login" in err


# -- following a job ----------------------------------------------------------------------------

def test_status_wait_cancel_and_list(google):
    states = iter(["QUEUED", "PREPARING", "RUNNING", "SUCCEEDED"])
    google.route("GET", r"/v1/projects/test-project/jobs/j1", lambda r: (200, {
        "jobId": "j1", "state": next(states), "createTime": "2026-11-21T10:00:00Z"}))
    code, out, err = run("wait", "--backend", "ml", "j1", "--project", PROJECT, "--interval", 0)
    assert code == 0, err
    assert "job j1: SUCCEEDED" in out and "PREPARING" in err

    google.route("GET", r"/v1/projects/test-project/jobs/j2", lambda r: (200, {
        "jobId": "j2", "state": "FAILED", "errorMessage": "num_classes too small"}))
    code, out, err = run("wait", "--backend", "ml", "j2", "--project", PROJECT, "--interval", 0)
    assert code == 1 and "ended FAILED: num_classes too small" in err
    code, out, _ = run("status", "--backend", "ml", "j2", "--project", PROJECT)
    assert code == 0 and "FAILED" in out and "num_classes too small" in out

    google.route("POST", r"/v1/projects/test-project/jobs/j2:cancel", lambda r: (200, {}))
    code, out, _ = run("cancel", "--backend", "ml", "j2", "--project", PROJECT)
    assert code == 0 and google.calls("POST", r"/v1/projects/test-project/jobs/j2:cancel")

    google.route("GET", r"/v1/projects/test-project/jobs", lambda r: (200, {"jobs": [
        {"jobId": "j1", "state": "SUCCEEDED"}, {"jobId": "j2", "state": "FAILED"}]}))
    code, out, _ = run("list", "--backend", "ml", "--project", PROJECT)
    assert code == 0 and "j1" in out and "j2" in out


def test_api_errors_are_one_line_with_status_and_message(google):
    google.route("GET", r"/v1/projects/test-project/jobs/nope",
                 lambda r: (404, {"error": {"code": 404, "message": "Field: name Error: The specified job does not exist.",
                                            "status": "NOT_FOUND"}}))
    code, _, err = run("status", "--backend", "ml", "nope", "--project", PROJECT)
    assert code == 1
    assert err.strip() == ("error: reading job nope failed: HTTP 404: Field: name Error: "
                           "The specified job does not exist.")


def test_logs_follow_pages_and_new_entries(google):
    pages = {
        None: {"entries": [{"insertId": "1", "timestamp": "2026-11-21T10:00:01Z", "severity": "INFO",
                            "textPayload": "step 1"}], "nextPageToken": "p2"},
        "p2": {"entries": [{"insertId": "2", "timestamp": "2026-11-21T10:00:02Z", "severity": "INFO",
                            "jsonPayload": {"message": "step 2"}}]},
    }
    later = {"entries": [{"insertId": "2", "timestamp": "2026-11-21T10:00:02Z", "textPayload": "step 2"},
                         {"insertId": "3", "timestamp": "2026-11-21T10:00:03Z", "severity": "ERROR",
                          "textPayload": "done"}]}
    listed = []

    def entries(request):
        listed.append(request["body"])
        if "timestamp>=" in request["body"]["filter"]:
            return 200, later
        return 200, pages[request["body"].get("pageToken")]

    google.route("POST", r"/v2/entries:list", entries)
    states = iter(["RUNNING", "SUCCEEDED"])
    google.route("GET", r"/v1/projects/test-project/jobs/j3", lambda r: (200, {"jobId": "j3", "state": next(states)}))
    code, out, err = run("logs", "--backend", "ml", "j3", "--project", PROJECT, "--follow", "--interval", 0)
    assert code == 0, err
    assert [line.split(" ", 2)[2] for line in out.strip().splitlines()] == ["step 1", "step 2", "done"]
    assert listed[0]["filter"] == 'resource.type="ml_job" AND resource.labels.job_id="j3"'
    assert listed[0]["resourceNames"] == ["projects/test-project"]
    assert listed[1]["pageToken"] == "p2"
    assert listed[2]["filter"].endswith('AND timestamp>="2026-11-21T10:00:02Z"')


@pytest.mark.parametrize("entry, blocked", [("main.py", "apache_beam"), ("real_data_loader.py", "apache_beam"),
                                            ("-m launcher", "googleapiclient"), ("-m trainer", "click")])
def test_a_python_without_the_projects_packages_says_to_use_the_venv(entry, blocked):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    start = ("runpy.run_path(%r, run_name='__main__')" % entry if entry.endswith(".py") else
             "runpy.run_module(%r, run_name='__main__', alter_sys=True)" % entry.split()[1])
    code = "import runpy, sys; sys.modules[%r] = None; sys.argv = ['x', '--help']; %s" % (blocked, start)
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "%s is not installed in this Python" % blocked in done.stderr and ".venv/bin/python" in done.stderr
