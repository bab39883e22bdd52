"""Training jobs behind one interface, for the CLI, the pipeline's steps and scripts alike.

    from launcher.jobs import backends, training
    backend = backends.backend("vertex", project="p", region="us-central1")
    plan = backend.plan(training.TrainRequest(job_id="m1", job_dir="gs://b/m1", dataset="gs://b/out",
                                              image="us-docker.pkg.dev/p/r/synthdet:1"))
    submission = backend.submit(plan)          # idempotent: the same job id never starts a second job
    job = backend.wait(submission.job.id)      # a Job: state, error, times, console URL

Vertex AI custom jobs (``launcher.jobs.vertex.VertexBackend``, the default), the same job body run
on this machine (``launcher.jobs.local.LocalBackend``) and the seed's AI Platform built-in algorithm
(``launcher.jobs.aiplatform.MlBackend``, ml v1, shut down by Google on 2025-01-31) implement
``Backend``; ``launcher.jobs.backends`` picks one by name. Errors are ``LauncherError`` (``UsageError`` for a bad
request).
"""
import abc
import dataclasses
import re
import time

from launcher.cloud import cloudlogging, storage
from launcher.errors import LauncherError, UsageError
from launcher.jobs import durations, jobspec
from launcher.jobs.capacity import Capacity

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
ENDED_BADLY = ("FAILED", "CANCELLED")     # a job with the same id that ended so is tried again


@dataclasses.dataclass
class Job:
    """A training job as both backends report it; ``state`` in ml v1's words (QUEUED, PREPARING,
    RUNNING, SUCCEEDED, FAILED, CANCELLING, CANCELLED)."""
    id: str                 # what get/cancel/logs take: Vertex's number, or the ml v1 job id
    name: str               # the --job-id it was submitted with
    state: str
    error: str = ""
    create_time: str = ""
    start_time: str = ""
    end_time: str = ""
    console_url: str = ""
    log_id: str = ""        # the job_id label of its Cloud Logging entries
    raw: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def done(self):
        return self.state in TERMINAL

    def title(self):
        return self.name if self.name == self.id else "%s (id %s)" % (self.name, self.id)

    def describe(self):
        lines = ["job %s: %s" % (self.title(), self.state)]
        for label, value in (("createTime", self.create_time), ("startTime", self.start_time),
                             ("endTime", self.end_time)):
            if value:
                lines.append("  %s: %s" % (label, value))
        if self.error:
            lines.append("  error: %s" % self.error)
        consumed = (self.raw.get("trainingOutput") or {}).get("consumedMLUnits")
        if consumed is not None:
            lines.append("  consumed ML units: %s" % consumed)
        if self.console_url:
            lines.append("  console: %s" % self.console_url)
        return "\n".join(lines)


@dataclasses.dataclass
class TrainRequest:
    """What to train and where; each backend takes the fields it knows and refuses the others."""
    job_id: str
    job_dir: str
    dataset: str = ""                   # a conversion output on gs://
    accelerator: str = ""               # a preset of the backend ("" = its default)
    gpus: int = 1                       # vertex: GPUs on the machine (1, 2, 4, 8)
    replicas: int = 1                   # vertex: machines; more than one trains multi-worker
    worker_pool_spec_file: str = ""     # vertex: your own workerPoolSpecs (replaces the preset)
    config_path: str = ""               # ml: a gcloud config.yaml with trainingInput
    image: str = ""                     # vertex: the project's image (README: the image)
    hyperparameters: dict = dataclasses.field(default_factory=dict)   # the seed's, those set
    num_classes: int = None
    backbone: str = "resnet-50"
    model_size: str = "full"            # vertex, local: the trainer's --model-size
    train_split: str = ""               # vertex, local: the split trained on ("" = train)
    eval_split: str = ""                # vertex, local: the split evaluated on ("" = eval, else val)
    init_checkpoint: str = ""           # vertex: "" = imagenet where Model Garden publishes one, else none
    init_from: str = ""                 # vertex: a trained model's gs:// folder to start from (fine-tuning)
    params_overrides: tuple = ()        # vertex: Model Garden overrides (YAML/JSON text or files)
    extra_args: tuple = ()              # ml: the built-in algorithm's name=value arguments
    training_data: str = ""             # ml: a TFRecord pattern instead of --dataset's
    validation_data: str = ""
    service_account: str = ""
    network: str = ""
    timeout: str = ""                   # "3h", "90m", "45s", "1d" or seconds
    labels: dict = dataclasses.field(default_factory=dict)
    tensorboard: str = ""
    enable_web_access: bool = False
    resume: bool = False
    step_time_from: str = ""            # vertex, local: a model dir whose measured step time prices --max-steps
    capacity: Capacity = dataclasses.field(default_factory=Capacity)   # vertex: Spot, disks, reservation, key...


@dataclasses.dataclass
class Plan:
    """A checked request: the body to send and how to say it with gcloud."""
    request: TrainRequest
    body: dict
    gcloud: str
    config_name: str
    config_text: str
    endpoint: str
    unchecked: list = dataclasses.field(default_factory=list)    # checks a dry run could not make
    costs: list = dataclasses.field(default_factory=list)        # the price ceiling, and what is expected


@dataclasses.dataclass
class Submission:
    job: Job
    created: bool           # False: a job with this id and spec existed; nothing was started
    retried_after: Job = None   # the earlier attempt that ended FAILED or CANCELLED, if any


def attempt_id(job_id, attempt):
    """The id of a job's ``attempt`` (1, 2, ...): the id itself, then ``<id>_attempt2`` and so on."""
    return job_id if attempt == 1 else "%s_attempt%d" % (job_id[:110], attempt)


class Backend(abc.ABC):
    """One training service: plan (checks, no side effects), submit, get, wait, cancel, list, logs."""
    name = ""

    def __init__(self, project, region="us-central1", api_endpoint=None, logging_endpoint=None):
        self.project, self.region = project, region
        self.api_endpoint, self.logging_endpoint = api_endpoint, logging_endpoint

    @abc.abstractmethod
    def plan(self, request, dry_run=False):
        """Check the request and build its body; reads the dataset's summary, sends nothing. A dry
        run goes on without credentials, listing in ``Plan.unchecked`` what it could not check."""

    @abc.abstractmethod
    def submit(self, plan):
        """Start the job unless one with the same id and spec exists: a ``Submission``."""

    def _submit_attempt(self, plan, body_for, existing, start):
        """The submit of a service where a job's id can be tried again: the first attempt id
        (``attempt_id``) whose job did not end badly is re-attached (``existing(job_id, body)``, a
        ``Job`` or None) or started (``start(body)``, a ``Job``); ``body_for(body, job_id)`` is the
        plan's body under an attempt's id. Only a first attempt checks the job dir: a later one
        resumes from it."""
        earlier = None
        for attempt in range(1, 100):
            job_id = attempt_id(plan.request.job_id, attempt)
            body = body_for(plan.body, job_id)
            job = existing(job_id, body)
            if job is not None and job.state in ENDED_BADLY:
                earlier = job
                continue
            if job is not None:
                return Submission(job, False, earlier)
            if earlier is None:
                self.check_job_dir(plan.request)
            return Submission(start(body), True, earlier)
        raise LauncherError("job %s failed 99 times; pass another --job-id" % plan.request.job_id)

    @abc.abstractmethod
    def get(self, job):
        """The ``Job`` for an id (what ``Job.id`` holds, or the --job-id name)."""

    @abc.abstractmethod
    def cancel(self, job):
        """Ask the service to cancel the job."""

    @abc.abstractmethod
    def list(self, limit=20):
        """The most recent jobs first, up to ``limit``, across pages."""

    def wait(self, job, interval=60.0, on_state=None, timeout=None):
        """Poll until the job ends; ``on_state(job)`` on each change. Returns the final ``Job``."""
        began, last = time.monotonic(), None
        while True:
            current = self.get(job)
            if current.state != last and on_state:
                on_state(current)
            last = current.state
            if current.done:
                return current
            if timeout is not None and time.monotonic() - began > timeout:
                raise LauncherError("job %s is still %s after %.0f s" % (current.title(), current.state, timeout))
            time.sleep(interval)

    def logs(self, job, after=None):
        """The job's Cloud Logging entries from ``after`` (RFC 3339), oldest first."""
        return cloudlogging.Logs(self.project, self.logging_endpoint).entries(self.log_id(job), after)

    def gcloud_follow(self, job):
        """gcloud commands that show the job and stream its logs."""
        return []

    def log_id(self, job):
        """The job_id label of the job's Cloud Logging entries."""
        return self.get(job).log_id

    def check_job_dir(self, request):
        existing = storage.first_file(request.job_dir, self.project)
        if existing and not request.resume:
            raise UsageError("%s already holds files (%s): the job would resume from its checkpoints. Pass "
                             "--resume to do that (with a larger --max-steps), or use an empty --job-dir"
                             % (request.job_dir, existing))


def dataset_facts(request, project):
    """Patterns, classes and validation images of ``request.dataset`` (and the request's overrides)."""
    facts = {"training_data_path": None, "validation_data_path": None, "num_classes": None,
             "validation_images": None, "label_ids": []}
    if request.dataset:
        dataset = request.dataset.rstrip("/")
        summary = storage.read_text(storage.join(dataset, "summary.json"), project)
        label_map = storage.read_text(storage.join(dataset, "label_map.pbtxt"), project, missing_ok=True)
        facts = jobspec.dataset_facts(summary, label_map, dataset, request.train_split, request.eval_split)
    facts["training_data_path"] = request.training_data or facts["training_data_path"]
    facts["validation_data_path"] = request.validation_data or facts["validation_data_path"]
    if request.num_classes is not None:
        facts["num_classes"] = request.num_classes
    if facts["num_classes"] is None:
        raise UsageError("no num_classes: pass --dataset (a conversion output) or --num-classes")
    return facts


def timeout_seconds(text):
    """``"3h"`` -> 10800; also ``90m``, ``45s``, ``1d``, ``2h30m`` and plain seconds."""
    return durations.seconds(text, "--timeout")


_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}\Z")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}\Z")


def parse_labels(items):
    """``["team=vision", ...]`` -> dict, by Google Cloud's label rules."""
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
            raise UsageError("--labels takes key=value with lower-case letters, digits, _ and - (a key starts "
                             "with a letter; each at most 63 characters), got %r" % item)
        labels[key] = value
    if len(labels) > 63:
        raise UsageError("at most 63 labels of yours (the launcher adds one), got %d" % len(labels))
    return labels
