"""Vertex AI Pipelines (aiplatform v1): pipeline runs and their schedules, one method per REST call."""
import re

import yaml

from launcher import google_api, vertex
from launcher.errors import LauncherError, UsageError

_CRON_FIELD = re.compile(r"^[\d*/,\-]+$")


def load_spec(path):
    """The compiled pipeline spec (``pipeline compile``'s YAML) as a dict."""
    try:
        with open(path) as f:
            spec = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as error:
        raise UsageError("cannot read the pipeline spec %s: %s" % (path, str(error).splitlines()[0]))
    if not isinstance(spec, dict) or "pipelineInfo" not in spec:
        raise UsageError("%s is not a compiled KFP v2 pipeline spec" % path)
    return spec


def job_body(spec, display_name, pipeline_root, parameters, labels=None):
    body = {"displayName": display_name, "pipelineSpec": spec,
            "runtimeConfig": {"gcsOutputDirectory": pipeline_root, "parameterValues": parameters}}
    if labels:
        body["labels"] = labels
    return body


def schedule_body(job, display_name, cron, max_concurrent_runs=1):
    fields = cron.split()
    if cron.startswith("TZ="):
        fields = fields[1:]
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise UsageError('--schedule must be a cron expression of 5 fields, e.g. "0 3 1,15 * *", got %r' % cron)
    return {"displayName": display_name, "cron": cron, "maxConcurrentRunCount": str(max_concurrent_runs),
            "createPipelineJobRequest": {"parent": None, "pipelineJob": job}}


class Pipelines:
    def __init__(self, project, region, api_endpoint=None):
        self.parent = "projects/%s/locations/%s" % (project, region)
        api = google_api.build("aiplatform", "v1", vertex.endpoint(region, api_endpoint)).projects().locations()
        self.jobs, self.schedules = api.pipelineJobs(), api.schedules()

    def _name(self, kind, value):
        return value if value.startswith("projects/") else "%s/%s/%s" % (self.parent, kind, value)

    def create(self, body, job_id=None):
        kwargs = {"parent": self.parent, "body": body}
        if job_id:
            kwargs["pipelineJobId"] = job_id
        try:
            return google_api.execute(self.jobs.create(**kwargs), "starting pipeline run %s" % body["displayName"])
        except google_api.Conflict:
            existing = self.get(job_id)
            if existing.get("runtimeConfig", {}).get("parameterValues") == body["runtimeConfig"]["parameterValues"]:
                return existing
            raise LauncherError("pipeline run %s exists with other parameters; pass another --run-id" % job_id,
                                exit_code=2)

    def get(self, run):
        return google_api.execute(self.jobs.get(name=self._name("pipelineJobs", run)), "reading pipeline run %s" % run)

    def cancel(self, run):
        return google_api.execute(self.jobs.cancel(name=self._name("pipelineJobs", run), body={}),
                                  "cancelling pipeline run %s" % run)

    def list(self, limit=20):
        page = google_api.execute(self.jobs.list(parent=self.parent, pageSize=limit, orderBy="create_time desc"),
                                  "listing pipeline runs")
        return page.get("pipelineJobs", [])

    def create_schedule(self, body):
        body = dict(body, createPipelineJobRequest=dict(body["createPipelineJobRequest"], parent=self.parent))
        return google_api.execute(self.schedules.create(parent=self.parent, body=body),
                                  "creating schedule %s" % body["displayName"])

    def list_schedules(self):
        return google_api.execute(self.schedules.list(parent=self.parent), "listing schedules").get("schedules", [])

    def pause_schedule(self, schedule):
        return google_api.execute(self.schedules.pause(name=self._name("schedules", schedule), body={}),
                                  "pausing schedule %s" % schedule)

    def delete_schedule(self, schedule):
        return google_api.execute(self.schedules.delete(name=self._name("schedules", schedule)),
                                  "deleting schedule %s" % schedule)


# PipelineState values in the launcher's words
STATES = {
    "PIPELINE_STATE_QUEUED": "QUEUED", "PIPELINE_STATE_PENDING": "PREPARING", "PIPELINE_STATE_RUNNING": "RUNNING",
    "PIPELINE_STATE_SUCCEEDED": "SUCCEEDED", "PIPELINE_STATE_FAILED": "FAILED",
    "PIPELINE_STATE_CANCELLING": "CANCELLING", "PIPELINE_STATE_CANCELLED": "CANCELLED",
    "PIPELINE_STATE_PAUSED": "PAUSED",
}


def state_word(run):
    return STATES.get(run.get("state", ""), run.get("state", "UNKNOWN"))
