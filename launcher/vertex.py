"""Vertex AI custom jobs (aiplatform v1): the live successor of AI Platform Training.

One method per REST call, the job body, the machines, and the trainer's package.
"""
import hashlib
import io
import os
import re
import shlex
import tarfile

import yaml

from launcher import google_api
from launcher.errors import LauncherError, UsageError

TRAINER_MODULE = "trainer.task"
# Vertex's prebuilt TensorFlow GPU training image; the trainer's package pins the TensorFlow and
# tf-models-official it runs with (pip installs them over the image's own). --executor-image overrides.
EXECUTOR_IMAGE = "us-docker.pkg.dev/vertex-ai/training/tf-gpu.2-17.py310:latest"
LABEL = "synthdet_job_id"

MACHINES = {
    "gpu": {"machineType": "g2-standard-8", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1},
    "a100": {"machineType": "a2-highgpu-1g", "acceleratorType": "NVIDIA_TESLA_A100", "acceleratorCount": 1},
    "tpu": {"machineType": "cloud-tpu", "acceleratorType": "TPU_V3", "acceleratorCount": 8},
}

# Vertex's job states in the words the ml v1 backend uses, so both print alike.
STATES = {
    "JOB_STATE_QUEUED": "QUEUED", "JOB_STATE_PENDING": "PREPARING", "JOB_STATE_RUNNING": "RUNNING",
    "JOB_STATE_SUCCEEDED": "SUCCEEDED", "JOB_STATE_FAILED": "FAILED", "JOB_STATE_CANCELLING": "CANCELLING",
    "JOB_STATE_CANCELLED": "CANCELLED", "JOB_STATE_PAUSED": "PAUSED", "JOB_STATE_EXPIRED": "FAILED",
    "JOB_STATE_UPDATING": "RUNNING", "JOB_STATE_PARTIALLY_SUCCEEDED": "FAILED",
    "JOB_STATE_UNSPECIFIED": "QUEUED",
}
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
_NUMERIC = re.compile(r"^\d+$")


def state_word(job):
    return STATES.get(job.get("state", ""), job.get("state", "UNKNOWN"))


def job_number(job):
    """The numeric id Vertex assigned (the last part of the job's name)."""
    return job.get("name", "").rsplit("/", 1)[-1]


def endpoint(region, override=None):
    return google_api.endpoint("aiplatform", override) or "https://%s-aiplatform.googleapis.com/" % region


class CustomJobs:
    def __init__(self, project, region, api_endpoint=None):
        self.project, self.region = project, region
        self.parent = "projects/%s/locations/%s" % (project, region)
        self.api = google_api.build("aiplatform", "v1", endpoint(region, api_endpoint)) \
            .projects().locations().customJobs()

    def create(self, body, job_id):
        """Submit ``body`` unless a job of ours with this id and the same spec exists: then return it.

        Returns ``(job, created)``. A job with this id and another spec is refused.
        """
        for existing in self.find(job_id):
            if _contains(existing.get("jobSpec") or {}, body["jobSpec"]):
                return existing, False
            raise LauncherError("a Vertex job named %s (%s) already exists with another spec; pass another "
                                "--job-id" % (job_id, existing.get("name")), exit_code=2)
        request = self.api.create(parent=self.parent, body=body)
        return google_api.execute(request, "submitting custom job %s" % job_id), True

    def find(self, job_id):
        """Jobs this launcher submitted with ``--job-id`` job_id, newest first."""
        flt = 'labels.%s="%s" AND display_name="%s"' % (LABEL, label_value(job_id), job_id)
        return [j for j in self.list(100, flt) if j.get("displayName") == job_id]

    def resolve(self, job):
        """The resource name of JOB: a numeric id, a full resource name or a --job-id name."""
        if job.startswith("projects/"):
            return job
        if _NUMERIC.match(job):
            return "%s/customJobs/%s" % (self.parent, job)
        found = self.find(job)
        if not found:
            raise LauncherError("no Vertex custom job named %s in %s" % (job, self.parent))
        return found[0]["name"]

    def get(self, job):
        name = self.resolve(job)
        return google_api.execute(self.api.get(name=name), "reading custom job %s" % job)

    def cancel(self, job):
        name = self.resolve(job)
        return google_api.execute(self.api.cancel(name=name, body={}), "cancelling custom job %s" % job)

    def list(self, limit=20, filter_=None):
        """The most recent jobs first, up to ``limit``, across pages."""
        jobs, token = [], None
        while len(jobs) < limit:
            kwargs = {"parent": self.parent, "pageSize": min(100, limit - len(jobs))}
            if filter_:
                kwargs["filter"] = filter_
            if token:
                kwargs["pageToken"] = token
            page = google_api.execute(self.api.list(**kwargs), "listing custom jobs")
            jobs.extend(page.get("customJobs", []))
            token = page.get("nextPageToken")
            if not token:
                break
        return sorted(jobs, key=lambda j: j.get("createTime", ""), reverse=True)[:limit]


def _contains(theirs, ours):
    """Whether every field we set is in ``theirs`` with the same value (the server adds defaults)."""
    if isinstance(ours, dict):
        return isinstance(theirs, dict) and all(_contains(theirs.get(k), v) for k, v in ours.items())
    if isinstance(ours, list):
        return isinstance(theirs, list) and len(theirs) == len(ours) and all(map(_contains, theirs, ours))
    return str(theirs) == str(ours)


def label_value(job_id):
    return job_id.lower()[:63]


def job_body(job_id, job_dir, machine, package_uri, trainer_args, executor_image=EXECUTOR_IMAGE,
             worker_pool_specs=None):
    """The ``customJobs.create`` body: one replica running ``python -m trainer.task ARGS``."""
    if worker_pool_specs is None:
        worker_pool_specs = [{"machineSpec": dict(machine), "replicaCount": "1"}]
    pools = []
    for pool in worker_pool_specs:
        pool = dict(pool)
        if "containerSpec" not in pool:
            pool["pythonPackageSpec"] = {"executorImageUri": executor_image, "packageUris": [package_uri],
                                         "pythonModule": TRAINER_MODULE, "args": list(trainer_args)}
        pools.append(pool)
    return {"displayName": job_id, "labels": {LABEL: label_value(job_id)},
            "jobSpec": {"workerPoolSpecs": pools, "baseOutputDirectory": {"outputUriPrefix": job_dir}}}


def worker_pools_from_file(path):
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)     # JSON is YAML
    except (OSError, yaml.YAMLError) as error:
        raise UsageError("cannot read --worker-pool-spec-file %s: %s" % (path, str(error).splitlines()[0]))
    pools = doc.get("workerPoolSpecs") if isinstance(doc, dict) else doc
    if not isinstance(pools, list) or not pools or not all(isinstance(p, dict) and "machineSpec" in p for p in pools):
        raise UsageError("%s must hold a list of worker pool specs, each with a machineSpec "
                         "(or {\"workerPoolSpecs\": [...]})" % path)
    return pools


def trainer_args(dataset, hyperparameters, num_classes=None, extra=()):
    """``python -m trainer.task`` arguments: the same flags as a local ``python -m trainer train``."""
    args = ["train", "--dataset", dataset]
    for name, value in hyperparameters.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    if num_classes is not None:
        args += ["--num-classes", str(num_classes)]
    for item in extra:
        args += ["--params-override", item]
    return args


def gcloud_command(body, region, config_path):
    """The equivalent ``gcloud ai custom-jobs create`` command (its --config holds the jobSpec)."""
    labels = ",".join("%s=%s" % item for item in sorted(body["labels"].items()))
    flags = ["--region=%s" % region, "--display-name=%s" % body["displayName"], "--labels=%s" % labels,
             "--config=%s" % config_path]
    return " \\\n    ".join(["gcloud ai custom-jobs create"] + [shlex.quote(f) for f in flags])


def config_yaml(body):
    return yaml.safe_dump(body["jobSpec"], sort_keys=False)


def console_url(project, region, job):
    return "https://console.cloud.google.com/vertex-ai/locations/%s/training/%s/cpu?project=%s" % (
        region, job_number(job), project)


# -- the trainer's package ----------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_NAME = "synthdet_trainer"


def trainer_sdist():
    """``(file name, bytes)`` of an sdist holding the ``trainer`` package (and ``tfproc``'s label map
    reader), with the trainer's requirements. Its bytes depend only on its files, so its name (which
    carries their hash) is stable: a retried submission names the same package."""
    from trainer import requirements
    members = []
    for package in ("trainer", "tfproc"):
        folder = os.path.join(ROOT, package)
        for name in sorted(os.listdir(folder)):
            if name.endswith(".py") and (package == "trainer" or name in ("__init__.py", "labels.py")):
                with open(os.path.join(folder, name), "rb") as f:
                    members.append(("%s/%s" % (package, name), f.read()))
    digest = hashlib.sha256(repr(requirements.REQUIRES).encode()
                            + b"".join(p.encode() + d for p, d in members)).hexdigest()[:12]
    version = "%s+%s" % (requirements.VERSION, digest)
    setup = ("import setuptools\nsetuptools.setup(name=%r, version=%r, packages=['trainer', 'tfproc'],\n"
             "    install_requires=%r)\n" % (PACKAGE_NAME, version, requirements.REQUIRES)).encode()
    pkg_info = ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (PACKAGE_NAME, version)).encode()
    base = "%s-%s" % (PACKAGE_NAME, version)
    members = [("PKG-INFO", pkg_info), ("setup.py", setup)] + members
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path, data in members:
            info = tarfile.TarInfo("%s/%s" % (base, path))
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return base + ".tar.gz", _gzip_stable(buffer.getvalue())


def _gzip_stable(data):
    """Zero the gzip header's timestamp so equal files give equal bytes."""
    return data[:4] + b"\x00\x00\x00\x00" + data[8:]


def package_uri(job_dir, file_name):
    return "%s/packages/%s" % (job_dir.rstrip("/"), file_name)
