"""The launcher's Vertex AI backend: real google-api-python-client, google-auth and google-cloud-storage
against fake services on 127.0.0.1 and the GCS emulator."""
import io
import json
import re
import tarfile

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


def vertex_train(dataset, name, *extra):
    return run("train", "--backend", "vertex", "--project", PROJECT, "--region", "us-central1",
               "--dataset", dataset, "--job-dir", job_dir(name), "--job-id", name, *extra)


def test_vertex_train_submits_the_trainer_as_a_custom_job(fake_vertex, google, dataset, cloud):
    code, out, err = vertex_train(dataset, "vtx_1", "--max-steps", 5000)
    assert code == 0, err
    (create,) = google.calls("POST", JOBS)
    assert create["headers"]["authorization"] == "Bearer " + TOKEN
    body = create["body"]
    assert body["displayName"] == "vtx_1" and body["labels"] == {"synthdet_job_id": "vtx_1"}
    assert body["jobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": job_dir("vtx_1")}
    (pool,) = body["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "g2-standard-8", "acceleratorType": "NVIDIA_L4",
                                   "acceleratorCount": 1}
    assert pool["replicaCount"] == "1"
    spec = pool["pythonPackageSpec"]
    assert spec["pythonModule"] == "trainer.task"
    assert spec["executorImageUri"].startswith("us-docker.pkg.dev/vertex-ai/training/tf-gpu.")
    args = spec["args"]
    assert args[:3] == ["train", "--dataset", dataset]
    pairs = dict(zip(args[3::2], args[4::2]))
    assert pairs["--max-steps"] == "5000" and pairs["--train-batch-size"] == "16"
    assert pairs["--num-eval-images"] == "200" and pairs["--fpn-type"] == "nasfpn"
    assert pairs["--backbone"] == "resnet-50" and "--image-size" not in pairs

    # the package the job names is in the bucket: an sdist of the trainer and its requirements
    (uri,) = spec["packageUris"]
    assert uri.startswith(job_dir("vtx_1") + "/packages/synthdet_trainer-") and uri.endswith(".tar.gz")
    blob = cloud.storage.bucket(BUCKET).blob(uri[len("gs://%s/" % BUCKET):])
    with tarfile.open(fileobj=io.BytesIO(blob.download_as_bytes())) as sdist:
        names = sdist.getnames()
        setup = sdist.extractfile(next(n for n in names if n.endswith("/setup.py"))).read().decode()
    assert any(n.endswith("/trainer/task.py") for n in names) and any(n.endswith("/tfproc/labels.py") for n in names)
    assert "tf-models-official==2.20.0" in setup and "numpy>=1.26,<2.4" in setup
    assert "submitted Vertex job vtx_1 (id 1000, PREPARING)" in out
    assert "vertex-ai/locations/us-central1/training/1000" in out


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
    assert body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["acceleratorType"] == "NVIDIA_TESLA_A100"
    assert "gcloud ai custom-jobs create \\\n    --region=us-central1 \\\n    --display-name=vtx_dry" in out
    assert "# job.yaml" in out and "pythonModule: trainer.task" in out


def test_vertex_own_worker_pools_and_image(fake_vertex, google, dataset, tmp_path):
    pools = tmp_path / "pools.json"
    pools.write_text(json.dumps([{"machineSpec": {"machineType": "n1-standard-8", "acceleratorType": "NVIDIA_TESLA_T4",
                                                  "acceleratorCount": 2}, "replicaCount": "1"}]))
    code, _, err = vertex_train(dataset, "vtx_3", "--worker-pool-spec-file", pools, "--executor-image", "my/image:1",
                                "--max-steps", 7)
    assert code == 0, err
    (pool,) = google.calls("POST", JOBS)[0]["body"]["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"]["acceleratorCount"] == 2 and pool["pythonPackageSpec"]["executorImageUri"] == "my/image:1"


def test_vertex_status_wait_cancel_and_list(fake_vertex, google, dataset):
    assert vertex_train(dataset, "vtx_4")[0] == 0
    states = iter(["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_FAILED"])

    def get(request):
        job = dict(fake_vertex.jobs["1000"], state=next(states))
        if job["state"] == "JOB_STATE_FAILED":
            job["error"] = {"code": 3, "message": "trainer exited with 1"}
        return 200, job

    code, out, _ = run("status", "vtx_4", "--backend", "vertex", "--project", PROJECT)
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
    code, out, err = run("logs", "vtx_5", "--backend", "vertex", "--project", PROJECT)
    assert code == 0, err
    assert [line.split(" ", 2)[2] for line in out.strip().splitlines()] == ["one", "two"]
    assert listed[0]["filter"] == 'resource.type="ml_job" AND resource.labels.job_id="1000"'


def test_ml_v1_refusal_names_the_vertex_backend(google, dataset):
    google.route("POST", r"/v1/projects/%s/jobs" % PROJECT,
                 lambda r: (403, {"error": {"code": 403, "message": "AI Platform Training has been shut down"}}))
    code, _, err = run("train", "--project", PROJECT, "--dataset", dataset, "--job-dir", job_dir("old"),
                       "--job-id", "old_1")
    assert code == 1 and "has been shut down" in err and "--backend vertex" in err
