"""Vertex AI custom jobs (aiplatform v1): the live successor of AI Platform Training.

A job runs the project's image (``containerSpec``; README: the image) with ``python -m trainer
train``; its body is ``vertex_spec``'s, checked by ``vertex_plan``. A create whose answer is lost
never starts a second job.
"""
import re

from launcher.cloud import google_api
from launcher.errors import LauncherError, UsageError
from launcher.jobs import training
from launcher.jobs.vertex_plan import build_plan
from launcher.jobs.vertex_spec import LABEL, contains, label_value, with_job_id

# Vertex's job states in the words the ml v1 backend uses, so both print alike.
STATES = {
    "JOB_STATE_QUEUED": "QUEUED", "JOB_STATE_PENDING": "PREPARING", "JOB_STATE_RUNNING": "RUNNING",
    "JOB_STATE_SUCCEEDED": "SUCCEEDED", "JOB_STATE_FAILED": "FAILED", "JOB_STATE_CANCELLING": "CANCELLING",
    "JOB_STATE_CANCELLED": "CANCELLED", "JOB_STATE_PAUSED": "PAUSED", "JOB_STATE_EXPIRED": "FAILED",
    "JOB_STATE_UPDATING": "RUNNING", "JOB_STATE_PARTIALLY_SUCCEEDED": "FAILED",
    "JOB_STATE_UNSPECIFIED": "QUEUED",
}
_NUMERIC = re.compile(r"^\d+\Z")


def state_word(job):
    return STATES.get(job.get("state", ""), job.get("state", "UNKNOWN"))


def job_number(job):
    """The numeric id Vertex assigned (the last part of the job's name)."""
    return job.get("name", "").rsplit("/", 1)[-1]


def console_url(project, region, job):
    return "https://console.cloud.google.com/vertex-ai/locations/%s/training/%s/cpu?project=%s" % (
        region, job_number(job), project)


class VertexBackend(training.Backend):
    name = "vertex"

    def __init__(self, project, region="us-central1", api_endpoint=None, logging_endpoint=None):
        super().__init__(project, region, api_endpoint, logging_endpoint)
        self.parent = "projects/%s/locations/%s" % (project, region)
        self._api = None

    @property
    def api(self):
        if self._api is None:
            api_endpoint = google_api.aiplatform_endpoint(self.region, self.api_endpoint)
            self._api = google_api.build("aiplatform", "v1", api_endpoint).projects().locations().customJobs()
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
            if contains(existing.get("jobSpec") or {}, body["jobSpec"]):
                return existing
            raise UsageError("a Vertex job named %s (%s) already exists with another spec; pass another --job-id"
                             % (job_id, existing.get("name")))
        return None

    def _create(self, body, job_id):
        """``customJobs.create``, which assigns the id itself: after a lost answer each retry first
        looks for the job by its label (``google_api.create_once``)."""
        url = "%sv1/%s/customJobs" % (google_api.aiplatform_endpoint(self.region, self.api_endpoint), self.parent)
        return google_api.create_once(url, body, "submitting custom job %s" % job_id,
                                      lambda: self._same_job(job_id, body))

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
