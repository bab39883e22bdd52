"""Cloud Logging entries of a training job (what `gcloud ai-platform jobs stream-logs` reads)."""
from launcher.cloud import google_api


def job_filter(job_id, after=None):
    text = 'resource.type="ml_job" AND resource.labels.job_id="%s"' % job_id
    if after:
        text += ' AND timestamp>="%s"' % after
    return text


class Logs:
    def __init__(self, project, api_endpoint=None):
        self.project = project
        self.api = google_api.build("logging", "v2", google_api.endpoint("logging", api_endpoint)).entries()

    def entries(self, job_id, after=None):
        """Every entry of the job (from ``after``, an RFC 3339 time), oldest first, across all pages."""
        body = {"resourceNames": ["projects/%s" % self.project], "filter": job_filter(job_id, after),
                "orderBy": "timestamp asc", "pageSize": 1000}
        while True:
            page = google_api.execute(self.api.list(body=body), "reading the logs of job %s" % job_id)
            yield from page.get("entries", [])
            token = page.get("nextPageToken")
            if not token:
                return
            body = dict(body, pageToken=token)


def format_entry(entry):
    payload = entry.get("textPayload")
    if payload is None:
        json_payload = entry.get("jsonPayload") or {}
        payload = json_payload.get("message") or json_payload or ""
    return "%s %s %s" % (entry.get("timestamp", ""), entry.get("severity", "DEFAULT"), str(payload).rstrip())
