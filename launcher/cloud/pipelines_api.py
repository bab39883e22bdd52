"""Vertex AI Pipelines (aiplatform v1): pipeline runs and their schedules, one method per REST call."""
import re

import yaml

from launcher.cloud import google_api
from launcher.errors import LauncherError, UsageError

_TIME_ZONE = re.compile(r"^(CRON_TZ|TZ)=(\S+)\s+(.*)$")


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


def job_body(spec, display_name, pipeline_root, parameters, labels=None, service_account="", network="", kms_key=""):
    body = {"displayName": display_name, "pipelineSpec": spec,
            "runtimeConfig": {"gcsOutputDirectory": pipeline_root, "parameterValues": parameters}}
    if labels:
        body["labels"] = dict(labels)
    if service_account:
        body["serviceAccount"] = service_account
    if network:
        body["network"] = network
    if kms_key:
        body["encryptionSpec"] = {"kmsKeyName": kms_key}
    return body


def check_cron(cron):
    """Refuse what Vertex AI would: a cron of five fields (names, ranges, lists and steps allowed),
    optionally after ``TZ=`` or ``CRON_TZ=`` and an IANA time zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from croniter import croniter
    text = (cron or "").strip()
    zone = _TIME_ZONE.match(text)
    if zone:
        try:
            ZoneInfo(zone.group(2))
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError("--schedule: unknown time zone %r (an IANA name such as Europe/Paris)" % zone.group(2))
        text = zone.group(3)
    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise UsageError('--schedule must be a cron expression of 5 fields (minute hour day month weekday), e.g. '
                         '"0 3 1,15 * *" or "CRON_TZ=Europe/Paris 0 3 * * MON", got %r' % cron)
    import datetime
    try:
        croniter(text, datetime.datetime(2026, 1, 1)).get_next(datetime.datetime)
    except Exception:       # croniter's CroniterBadDateError: no such date in years
        raise UsageError("--schedule %r never fires (no such date, e.g. 30 February)" % cron)
    return cron.strip()


def schedule_body(job, display_name, cron, max_concurrent_runs=1):
    return {"displayName": display_name, "cron": check_cron(cron), "maxConcurrentRunCount": str(max_concurrent_runs),
            "createPipelineJobRequest": {"parent": None, "pipelineJob": job}}


def _run_of(schedule):
    """What a schedule's runs are: their pipeline spec's name and parameters."""
    job = (schedule.get("createPipelineJobRequest") or {}).get("pipelineJob") or {}
    return (job.get("pipelineSpec") or {}).get("pipelineInfo"), (job.get("runtimeConfig") or {}).get("parameterValues")


def failed_tasks(job):
    """The tasks of a pipeline run that failed, with their errors, from Vertex's task details."""
    found = []
    for task in (job.get("jobDetail") or {}).get("taskDetails") or []:
        if task.get("state") == "FAILED" and task.get("taskName") not in (None, "", job.get("displayName")):
            found.append((task["taskName"], (task.get("error") or {}).get("message", "")))
    return found


class Pipelines:
    def __init__(self, project, region, api_endpoint=None):
        self.parent = "projects/%s/locations/%s" % (project, region)
        self.endpoint = google_api.aiplatform_endpoint(region, api_endpoint)
        api = google_api.build("aiplatform", "v1", self.endpoint).projects().locations()
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
        return google_api.pages(lambda **page: self.jobs.list(parent=self.parent, orderBy="create_time desc", **page),
                                "pipelineJobs", "listing pipeline runs", limit)

    def create_schedule(self, body):
        """``schedules.create``, which assigns the id itself: a create whose answer is lost is never
        sent again blindly, so a schedule (and each run it starts) is never made twice."""
        body = dict(body, createPipelineJobRequest=dict(body["createPipelineJobRequest"], parent=self.parent))
        return google_api.create_once("%sv1/%s/schedules" % (self.endpoint, self.parent), body,
                                      "creating schedule %s" % body["displayName"], lambda: self._same_schedule(body))

    def _same_schedule(self, body):
        """The schedule a lost create of ``body`` made (its display name, cron and run), or None."""
        flt = 'display_name="%s"' % body["displayName"]
        found = google_api.pages(lambda **page: self.schedules.list(parent=self.parent, filter=flt, **page),
                                 "schedules", "looking for schedule %s" % body["displayName"])
        for schedule in found:
            if schedule.get("displayName") == body["displayName"] and schedule.get("cron") == body["cron"] and \
                    _run_of(schedule) == _run_of(body):
                return schedule
        return None

    def list_schedules(self):
        return google_api.pages(lambda **page: self.schedules.list(parent=self.parent, **page), "schedules",
                                "listing schedules")

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
