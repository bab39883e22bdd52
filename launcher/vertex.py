"""Vertex AI custom jobs (aiplatform v1): the live successor of AI Platform Training.

A job runs the project's image (``containerSpec``; README: the image) with ``python -m trainer
train``, the strategy that fits its machines, and the accelerators it pays for, which the trainer
checks at start.
"""
import json
import re
import shlex
import time

import yaml

from launcher import capacity as capacity_lib
from launcher import google_api, jobspec, prices, training
from launcher.errors import LauncherError, UsageError

LABEL = "synthdet_job_id"
TRAINER_COMMAND = ["python", "-m", "trainer"]

# --accelerator presets: the machine type for 1, 2, 4 or 8 GPUs of a kind.
GPU_MACHINES = {
    "gpu": ("NVIDIA_L4", {1: "g2-standard-8", 2: "g2-standard-24", 4: "g2-standard-48", 8: "g2-standard-96"}),
    "a100": ("NVIDIA_TESLA_A100", {1: "a2-highgpu-1g", 2: "a2-highgpu-2g", 4: "a2-highgpu-4g", 8: "a2-highgpu-8g"}),
}
CPU_MACHINE = "n1-standard-8"       # --accelerator cpu: no accelerator (on --backend local: this machine's CPU)
ACCELERATORS = ("gpu", "a100", "cpu", "tpu")
TPU_REFUSAL = (
    "--accelerator tpu is refused: the project's image carries TensorFlow for CUDA, not TensorFlow's TPU "
    "runtime (tensorflow-tpu with libtpu cannot be installed beside tf-models-official, which requires "
    "tensorflow), so a TPU (v5e: ct5lp-hightpu-4t, TPU_V5_LITEPOD) would sit idle. Train on --accelerator gpu "
    "or a100, or pass --worker-pool-spec-file with a TPU machine and the containerSpec of a TPU image of your own")

# Vertex's job states in the words the ml v1 backend uses, so both print alike.
STATES = {
    "JOB_STATE_QUEUED": "QUEUED", "JOB_STATE_PENDING": "PREPARING", "JOB_STATE_RUNNING": "RUNNING",
    "JOB_STATE_SUCCEEDED": "SUCCEEDED", "JOB_STATE_FAILED": "FAILED", "JOB_STATE_CANCELLING": "CANCELLING",
    "JOB_STATE_CANCELLED": "CANCELLED", "JOB_STATE_PAUSED": "PAUSED", "JOB_STATE_EXPIRED": "FAILED",
    "JOB_STATE_UPDATING": "RUNNING", "JOB_STATE_PARTIALLY_SUCCEEDED": "FAILED",
    "JOB_STATE_UNSPECIFIED": "QUEUED",
}
_NUMERIC = re.compile(r"^\d+\Z")
_NETWORK = re.compile(r"^projects/[^/\s]+/global/networks/[^/\s]+\Z")
_TENSORBOARD = re.compile(r"^projects/[^/\s]+/locations/[^/\s]+/tensorboards/\d+\Z")
_SERVICE_ACCOUNT = re.compile(r"^[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com\Z")
CREATE_ATTEMPTS = 5
LOCAL_IMAGE = "synthdet:local"      # --backend local runs the containerSpec's command in this environment
HTTP_TIMEOUT = (15, 120)    # seconds to connect, to read an answer


def state_word(job):
    return STATES.get(job.get("state", ""), job.get("state", "UNKNOWN"))


def job_number(job):
    """The numeric id Vertex assigned (the last part of the job's name)."""
    return job.get("name", "").rsplit("/", 1)[-1]


def endpoint(region, override=None):
    return google_api.endpoint("aiplatform", override) or "https://%s-aiplatform.googleapis.com/" % region


def label_value(job_id):
    return job_id.lower()[:63]


def console_url(project, region, job):
    return "https://console.cloud.google.com/vertex-ai/locations/%s/training/%s/cpu?project=%s" % (
        region, job_number(job), project)


# -- the job body -----------------------------------------------------------------------------------

def machine_spec(accelerator, gpus=1):
    if accelerator == "tpu":
        raise UsageError(TPU_REFUSAL)
    if accelerator == "cpu":
        if gpus != 1:
            raise UsageError("--gpus goes with --accelerator gpu or a100, not cpu")
        return {"machineType": CPU_MACHINE}
    if accelerator not in GPU_MACHINES:
        raise UsageError("--accelerator must be one of %s, got %s" % (", ".join(ACCELERATORS), accelerator))
    kind, machines = GPU_MACHINES[accelerator]
    if gpus not in machines:
        raise UsageError("--gpus must be one of %s, got %s" % (", ".join(map(str, sorted(machines))), gpus))
    return {"machineType": machines[gpus], "acceleratorType": kind, "acceleratorCount": gpus}


def worker_pools(accelerator, gpus=1, replicas=1):
    """One chief and, with ``replicas`` > 1, a pool of ``replicas - 1`` workers on the same machine."""
    if replicas < 1:
        raise UsageError("--replicas must be at least 1, got %d" % replicas)
    spec = machine_spec(accelerator, gpus)
    pools = [{"machineSpec": spec, "replicaCount": "1"}]
    if replicas > 1:
        pools.append({"machineSpec": dict(spec), "replicaCount": str(replicas - 1)})
    return pools


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


def _is_tpu(spec):
    return str(spec.get("acceleratorType", "")).startswith("TPU")


def promise(spec):
    """What the trainer must see on a machine: ``"gpu:N"``, ``"tpu:N"`` or None (CPU)."""
    count = int(spec.get("acceleratorCount") or 0)
    if not spec.get("acceleratorType") or count < 1:
        return None
    return "%s:%d" % ("tpu" if _is_tpu(spec) else "gpu", count)


def strategy(pools):
    """The trainer's strategy for these pools: several machines train multi-worker; otherwise the
    chief's accelerators decide."""
    machines = sum(int(p.get("replicaCount") or 1) for p in pools if p)
    chief = pools[0]["machineSpec"]
    if machines > 1:
        if _is_tpu(chief):
            raise UsageError("more than one TPU machine is not supported; use one TPU pool with one replica")
        return "multi_worker_mirrored"
    if _is_tpu(chief):
        return "tpu"
    return "mirrored" if int(chief.get("acceleratorCount") or 0) > 1 else "one_device"


def trainer_args(dataset, hyperparameters, num_classes=None, backbone="resnet-50", strategy_name="auto",
                 spec=None, overrides=(), init_checkpoint=None, init_from=None, model_size="full"):
    """``python -m trainer`` arguments: the same flags as a local ``python -m trainer train``, plus the
    strategy and what the machine promises."""
    args = ["train", "--dataset", dataset]
    for name, value in hyperparameters.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    if num_classes is not None:
        args += ["--num-classes", str(num_classes)]
    args += ["--backbone", backbone, "--strategy", strategy_name]
    if model_size and model_size != "full":
        args += ["--model-size", model_size]
    if init_from:
        args += ["--init-from", init_from]
    elif init_checkpoint:
        args += ["--init-checkpoint", init_checkpoint]
    if spec:
        expected = promise(spec)
        if expected:
            args += ["--expect-accelerator", expected]
        args += ["--machine-type", spec.get("machineType", "")]
    for mapping in overrides:
        args += ["--params-override", json.dumps(mapping, sort_keys=True)]
    return args


def job_body(job_id, job_dir, pools, image, trainer_args_for, labels=None, service_account="", network="",
             timeout_seconds=None, tensorboard="", enable_web_access=False, capacity=None):
    """The ``customJobs.create`` body. Each pool runs the image with ``trainer_args_for(machineSpec)``;
    a pool of your own with a containerSpec that has args runs as given."""
    filled = []
    for pool in pools:
        pool = dict(pool)
        container = dict(pool.get("containerSpec") or {})
        if _is_tpu(pool["machineSpec"]) and not container.get("imageUri"):
            raise UsageError(TPU_REFUSAL)
        if not container.get("args"):
            container.setdefault("imageUri", image)
            container.setdefault("command", list(TRAINER_COMMAND))
            container["args"] = trainer_args_for(pool["machineSpec"])
        if not container.get("imageUri"):
            raise UsageError("pass --image: the project's image, built by cloudbuild.yaml (README: the image)")
        pool["containerSpec"] = container
        pool.pop("pythonPackageSpec", None)
        filled.append(pool)
    spec = {"workerPoolSpecs": filled, "baseOutputDirectory": {"outputUriPrefix": job_dir}}
    if service_account:
        spec["serviceAccount"] = service_account
    if network:
        spec["network"] = network
    if timeout_seconds:
        spec["scheduling"] = {"timeout": "%ds" % timeout_seconds}
    if tensorboard:
        spec["tensorboard"] = tensorboard
    if enable_web_access:
        spec["enableWebAccess"] = True
    all_labels = dict(labels or {})
    all_labels[LABEL] = label_value(job_id)
    body = {"displayName": job_id, "labels": all_labels, "jobSpec": spec}
    return capacity_lib.apply(body, capacity or capacity_lib.Capacity(), capacity_lib.machines(filled))


def with_job_id(body, job_id):
    """The body under another job id (a later attempt): its display name and our label."""
    body = dict(body, displayName=job_id)
    body["labels"] = dict(body["labels"], **{LABEL: label_value(job_id)})
    return body


def gcloud_command(body, region, config_path):
    """The equivalent ``gcloud ai custom-jobs create`` command (its --config holds the jobSpec)."""
    labels = ",".join("%s=%s" % item for item in sorted(body["labels"].items()))
    flags = ["--region=%s" % region, "--display-name=%s" % body["displayName"], "--labels=%s" % labels,
             "--config=%s" % config_path]
    if body.get("encryptionSpec"):
        flags.append("--kms-key=%s" % body["encryptionSpec"]["kmsKeyName"])
    return " \\\n    ".join(["gcloud ai custom-jobs create"] + [shlex.quote(f) for f in flags])


def config_yaml(body):
    return yaml.safe_dump(body["jobSpec"], sort_keys=False)


def _contains(theirs, ours):
    """Whether every field we set is in ``theirs`` with the same value (the server adds defaults)."""
    if isinstance(ours, dict):
        return isinstance(theirs, dict) and all(_contains(theirs.get(k), v) for k, v in ours.items())
    if isinstance(ours, list):
        return isinstance(theirs, list) and len(theirs) == len(ours) and all(map(_contains, theirs, ours))
    return str(theirs) == str(ours)


def _check_options(request):
    if request.service_account and not _SERVICE_ACCOUNT.match(request.service_account):
        raise UsageError("--service-account takes an email such as trainer@PROJECT.iam.gserviceaccount.com, got %r"
                         % request.service_account)
    if request.network and not _NETWORK.match(request.network):
        raise UsageError("--network takes projects/PROJECT_NUMBER/global/networks/NAME, got %r" % request.network)
    if request.tensorboard:
        if not _TENSORBOARD.match(request.tensorboard):
            raise UsageError("--tensorboard takes projects/P/locations/R/tensorboards/ID, got %r" % request.tensorboard)
        if not request.service_account:
            raise UsageError("--tensorboard needs --service-account: Vertex AI uploads the logs as that account")
    if request.extra_args:
        raise UsageError("--arg is the built-in algorithm's (--backend ml); on Vertex AI pass Model Garden "
                         "settings with --params-override")
    if request.config_path:
        raise UsageError("--config is a gcloud config.yaml for --backend ml; on Vertex AI use "
                         "--worker-pool-spec-file")
    if request.training_data or request.validation_data:
        raise UsageError("--training-data/--validation-data are for --backend ml; the trainer reads --dataset")


def _check_hyperparameters(values, facts):
    for name in ("max_steps", "train_batch_size", "train_steps_per_eval"):
        try:
            ok = int(values[name]) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UsageError("%s must be a positive integer, got %r" % (name, values[name]))
    try:
        eval_images = int(values["num_eval_images"])
    except (TypeError, ValueError):
        eval_images = -1
    if eval_images < 0:
        raise UsageError("num_eval_images must be 0 (all) or a positive integer, got %r" % values["num_eval_images"])
    available = facts.get("validation_images")
    if available is not None and int(values["num_eval_images"]) > available:
        raise UsageError("num_eval_images %s is more than the %d validation images; pass --num-eval-images %d"
                         % (values["num_eval_images"], available, available))
    size = values.get("image_size")
    if size:
        parts = str(size).split(",")
        if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
            raise UsageError('image_size must be "height,width" of positive integers, got %r' % size)


def _where(path, flag, local, dry_run, unchecked):
    """A gs:// path as given; a local one made absolute where the job can read it (--backend local),
    or, in a dry run for Vertex, read from disk with a note that the job needs it on gs://."""
    import os
    path = path.rstrip("/")
    if path.startswith("gs://"):
        return path
    if "://" in path:
        raise UsageError("%s must be a gs:// or local path, got %s" % (flag, path))
    if not local:
        if not dry_run:
            raise UsageError("%s must be on gs:// for Vertex AI to read it, got %s" % (flag, path))
        unchecked.append("%s %s is local: it was read from disk here, but a Vertex job reads only gs://" % (flag, path))
    return os.path.abspath(path)


def _dataset_facts(request, project, dry_run, unchecked):
    if dry_run and request.dataset.startswith("gs://") and not google_api.has_credentials():
        unchecked.append("no Google credentials: %s/summary.json was not read, so num_classes, the eval images "
                         "and the label map are not checked (the trainer reads them when the job starts)"
                         % request.dataset)
        return {"num_classes": request.num_classes, "validation_images": None, "label_ids": []}
    return training.dataset_facts(request, project)


def _settings(request, body):
    """What decides a step's time: the trainer's model and batch, and the machines it runs on."""
    from trainer import config as trainer_config
    chief = body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]
    values = dict(trainer_config.HYPERPARAMETERS, **{k: v for k, v in request.hyperparameters.items()
                                                     if v not in (None, "")})
    settings = {"backbone": request.backbone, "model_size": request.model_size,
                "train_batch_size": int(values["train_batch_size"]), "machine_type": chief.get("machineType", ""),
                "accelerator": promise(chief), "machines": capacity_lib.machines(body["jobSpec"]["workerPoolSpecs"])}
    if values.get("image_size"):
        settings["image_size"] = str(values["image_size"]).replace(" ", "")
    return settings


def _measured_step_time(request, body, project, unchecked):
    """The step time an earlier run with the same settings measured (its TIMING file): in
    ``--step-time-from``, or in the job dir when resuming. None when there is none to trust."""
    from launcher import storage
    from trainer import timing
    where = request.step_time_from or (request.job_dir if request.resume else "")
    if not where:
        return None
    where = where.rstrip("/")
    if where.startswith("gs://") and not google_api.has_credentials():
        unchecked.append("no Google credentials: %s/%s was not read, so there is no expected cost"
                         % (where, timing.FILE))
        return None
    text = storage.read_text(storage.join(where, timing.FILE), project, missing_ok=True)
    if not text:
        if request.step_time_from:
            raise UsageError("--step-time-from %s holds no %s: pass the model dir of a finished training run"
                             % (where, timing.FILE))
        return None
    try:
        measured = timing.parse(text, "%s/%s" % (where, timing.FILE))
    except ValueError as error:
        raise UsageError(str(error))
    differs = timing.differences(measured["settings"], _settings(request, body))
    if differs:
        unchecked.append("no expected cost: the step time in %s was measured with other settings (%s)"
                         % (where, "; ".join(differs)))
        return None
    return dict(measured, where=where)


def build_plan(request, project, region, local=False, dry_run=False):
    """The checked ``customJobs.create`` body for ``request``: for Vertex AI, or (``local``) for the
    same job run on this machine, where the dataset and job dir may be local folders."""
    from trainer import config as trainer_config
    unchecked = []
    if not request.dataset:
        raise UsageError("--backend %s needs --dataset (the trainer reads the conversion output)"
                         % ("local" if local else "vertex"))
    request.dataset = _where(request.dataset, "--dataset", local, dry_run, unchecked)
    request.job_dir = _where(request.job_dir, "--job-dir", local, dry_run, unchecked)
    jobspec.check_job_id(request.job_id)
    _check_options(request)
    timeout = training.timeout_seconds(request.timeout) if request.timeout else None
    facts = _dataset_facts(request, project, dry_run, unchecked)
    if request.num_classes is not None:
        if request.num_classes < 1:
            raise UsageError("--num-classes must be at least 1, got %d" % request.num_classes)
        if facts.get("label_ids") and max(facts["label_ids"]) > request.num_classes:
            raise UsageError("--num-classes %d does not cover class id %d of the label map; pass %d or more"
                             % (request.num_classes, max(facts["label_ids"]), max(facts["label_ids"])))
    values = {k: v for k, v in trainer_config.HYPERPARAMETERS.items() if k not in ("image_size", "warmup_steps")}
    values["num_eval_images"] = jobspec.default_eval_images(facts)
    values.update({k: v for k, v in request.hyperparameters.items() if v not in (None, "")})
    unknown = set(values) - set(trainer_config.HYPERPARAMETERS)
    if unknown:
        raise UsageError("unknown hyperparameter(s): %s" % ", ".join(sorted(unknown)))
    _check_hyperparameters(values, facts)
    if request.model_size not in trainer_config.MODEL_SIZES:
        raise UsageError("--model-size must be one of %s, got %s" % (", ".join(trainer_config.MODEL_SIZES),
                                                                    request.model_size))
    try:
        overrides = [trainer_config.parse_override(text) for text in request.params_overrides]
        if overrides and not trainer_config.check_overrides(overrides):
            unchecked.append("--params-override: the trainer extra is not installed here, so Model Garden could not "
                             "check the keys (pip install -e \".[train]\")")
    except trainer_config.ConfigError as error:
        raise UsageError(str(error))
    if request.worker_pool_spec_file:
        pools = worker_pools_from_file(request.worker_pool_spec_file)
    else:
        pools = worker_pools(request.accelerator or "gpu", request.gpus, request.replicas)
    strategy_name = strategy(pools)
    unchecked += capacity_lib.check(request.capacity, region)
    init = request.init_checkpoint or ("imagenet" if request.backbone in trainer_config.IMAGENET_CHECKPOINTS
                                       else "none")
    try:
        trainer_config.resolve_init_checkpoint(init if "://" in init or init in ("imagenet", "none") else None,
                                               request.backbone)
    except trainer_config.ConfigError as error:
        raise UsageError(str(error))
    init_from = _where(request.init_from, "--init-from", local, False, unchecked) if request.init_from else None
    if init not in ("imagenet", "none") and "://" not in init:
        if not local:
            raise UsageError("--init-checkpoint must be imagenet, none or a gs:// checkpoint the job can read, got %s"
                             % init)
        import os
        init = os.path.abspath(init)
    image = request.image or (LOCAL_IMAGE if local else "")
    body = job_body(
        request.job_id, request.job_dir, pools, image,
        lambda spec: trainer_args(request.dataset, values, request.num_classes, request.backbone, strategy_name,
                                  spec, overrides, None if init == "none" else init, init_from,
                                  request.model_size),
        labels=request.labels, service_account=request.service_account, network=request.network,
        timeout_seconds=timeout, tensorboard=request.tensorboard, enable_web_access=request.enable_web_access,
        capacity=request.capacity)
    parent = "projects/%s/locations/%s" % (project or "PROJECT", region)
    costs = [prices.ceiling(body, region, request.capacity).line]
    measured = _measured_step_time(request, body, project, unchecked)
    if measured:
        costs.append(prices.expected(body, region, request.capacity, measured["seconds_per_step"],
                                     int(values["max_steps"]), measured["where"]))
    return training.Plan(request, body, gcloud_command(body, region, "job.yaml"), "job.yaml", config_yaml(body),
                         "POST %s/customJobs" % parent, unchecked, costs)


class VertexBackend(training.Backend):
    name = "vertex"

    def __init__(self, project, region="us-central1", api_endpoint=None, logging_endpoint=None):
        super().__init__(project, region, api_endpoint, logging_endpoint)
        self.parent = "projects/%s/locations/%s" % (project, region)
        self._api = None

    @property
    def api(self):
        if self._api is None:
            self._api = google_api.build("aiplatform", "v1", endpoint(self.region, self.api_endpoint)) \
                .projects().locations().customJobs()
        return self._api

    # -- plan and submit --------------------------------------------------------------------------

    def plan(self, request, dry_run=False):
        return build_plan(request, self.project, self.region, local=False, dry_run=dry_run)

    def submit(self, plan):
        """Start the job, or re-attach to a RUNNING or SUCCEEDED one with its id. A job with its id
        that ended FAILED or CANCELLED is tried again as ``<id>_attempt2`` (and so on), resuming
        from the checkpoints in the job dir."""
        def existing(job_id, body):
            found = self._same_job(job_id, body)
            return self._job(found) if found else None

        return self._submit_attempt(plan, with_job_id, existing,
                                    lambda body: self._job(self._create(body, body["displayName"])))

    def _same_job(self, job_id, body):
        """A job of ours with this id and the same spec, or None; another spec under the id is refused."""
        for existing in self.find(job_id):
            if _contains(existing.get("jobSpec") or {}, body["jobSpec"]):
                return existing
            raise UsageError("a Vertex job named %s (%s) already exists with another spec; pass another --job-id"
                             % (job_id, existing.get("name")))
        return None

    def _create(self, body, job_id):
        """``customJobs.create``, which assigns the id itself: a create whose answer is lost may have
        started the job, so each retry first looks for it by its label (and no transport re-sends the
        request on its own)."""
        import requests
        from google.auth.transport.requests import AuthorizedSession
        session = AuthorizedSession(google_api.credentials())
        url = "%sv1/%s/customJobs" % (endpoint(self.region, self.api_endpoint), self.parent)
        what = "submitting custom job %s" % job_id
        for attempt in range(CREATE_ATTEMPTS):
            if attempt:
                time.sleep(min(2 ** attempt, 30))
                found = self._same_job(job_id, body)
                if found:
                    return found
            try:
                answer = session.post(url, json=body, timeout=HTTP_TIMEOUT)
            except requests.RequestException as error:
                lost = "could not reach the API: %s" % error
                continue
            if answer.status_code == 429 or answer.status_code >= 500:
                lost = "HTTP %d: %s" % (answer.status_code, google_api.message_of(answer.content))
                continue
            if answer.status_code >= 400:
                raise LauncherError("%s failed: HTTP %d: %s" % (what, answer.status_code,
                                                              google_api.message_of(answer.content)))
            return answer.json()
        found = self._same_job(job_id, body)
        if found:
            return found
        raise LauncherError("%s failed after %d attempts: %s" % (what, CREATE_ATTEMPTS, lost))

    # -- following jobs ---------------------------------------------------------------------------

    def find(self, job_id):
        """Jobs this launcher submitted with ``--job-id`` job_id, newest first."""
        flt = 'labels.%s="%s" AND display_name="%s"' % (LABEL, label_value(job_id), job_id)
        return [j for j in self._list(100, flt) if j.get("displayName") == job_id]

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

    def gcloud_follow(self, job):
        return ["gcloud ai custom-jobs %s %s --project %s --region %s" % (verb, job.id, self.project, self.region)
                for verb in ("describe", "stream-logs")]

    def log_id(self, job):
        return job if _NUMERIC.match(job) else job_number({"name": self.resolve(job)})

    def get(self, job):
        return self._job(google_api.execute(self.api.get(name=self.resolve(job)), "reading custom job %s" % job))

    def cancel(self, job):
        google_api.execute(self.api.cancel(name=self.resolve(job), body={}), "cancelling custom job %s" % job)

    def list(self, limit=20):
        return [self._job(j) for j in self._list(limit)]

    def _list(self, limit, filter_=None):
        """The newest ``limit`` jobs. customJobs.list has no orderBy and documents no order, so every
        page is read before the newest are taken."""
        extra = {"filter": filter_} if filter_ else {}
        jobs = google_api.pages(lambda **page: self.api.list(parent=self.parent, **extra, **page), "customJobs",
                                "listing custom jobs")
        return sorted(jobs, key=lambda j: j.get("createTime", ""), reverse=True)[:limit]

    def _job(self, raw):
        number = job_number(raw)
        return training.Job(id=number, name=raw.get("displayName") or number, state=state_word(raw),
                            error=(raw.get("error") or {}).get("message", ""), create_time=raw.get("createTime", ""),
                            start_time=raw.get("startTime", ""), end_time=raw.get("endTime", ""),
                            console_url=console_url(self.project, self.region, raw), log_id=number, raw=raw)
