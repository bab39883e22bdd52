"""AI Platform Training (``ml`` v1) jobs: one method per REST call."""
from launcher import google_api
from launcher.errors import LauncherError

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


class Jobs:
    def __init__(self, project, api_endpoint=None):
        self.project = project
        self.api = google_api.build("ml", "v1", google_api.endpoint("ml", api_endpoint)).projects().jobs()

    def _name(self, job_id):
        return "projects/%s/jobs/%s" % (self.project, job_id)

    def create(self, body):
        """Submit ``body``; if a job with its id exists with the same spec, return that job instead."""
        request = self.api.create(parent="projects/%s" % self.project, body=body)
        try:
            return google_api.execute(request, "submitting job %s" % body["jobId"]), True
        except google_api.Conflict:
            pass   # already there: ours, if a retried submission had gone through, or someone else's
        existing = self.get(body["jobId"])
        if existing.get("trainingInput") == body["trainingInput"]:
            return existing, False
        raise LauncherError("job %s already exists in project %s with another spec; pass another --job-id"
                            % (body["jobId"], self.project), exit_code=2)

    def get(self, job_id):
        return google_api.execute(self.api.get(name=self._name(job_id)), "reading job %s" % job_id)

    def cancel(self, job_id):
        return google_api.execute(self.api.cancel(name=self._name(job_id), body={}), "cancelling job %s" % job_id)

    def list(self, page_size=20, filter_=None):
        """The most recent jobs first, up to ``page_size``."""
        kwargs = {"parent": "projects/%s" % self.project, "pageSize": page_size}
        if filter_:
            kwargs["filter"] = filter_
        return google_api.execute(self.api.list(**kwargs), "listing jobs").get("jobs", [])


def console_url(project, job_id):
    return "https://console.cloud.google.com/ai-platform/jobs/%s?project=%s" % (job_id, project)
