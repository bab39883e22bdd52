"""Unity Simulation's data transfer API (seed 003, phase 1): one method per endpoint."""
import json
import os
import pathlib
import time

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from launcher.errors import LauncherError, UsageError

DEFAULT_API = "https://api.simulation.unity3d.com"
TERMINAL = ("success", "failed")
TIMEOUT = (10, 60)   # connect, read (seconds)


def usim_dir():
    return pathlib.Path(os.environ.get("USIM_HOME") or pathlib.Path.home() / ".usim")


def resolve_token(token=None):
    """``--token``, else ``USIM_ACCESS_TOKEN``, else ``access_token`` in ~/.usim/token.json."""
    token = token or os.environ.get("USIM_ACCESS_TOKEN")
    if token:
        return well_formed(_strip_bearer(token))
    path = usim_dir() / "token.json"
    try:
        value = json.loads(path.read_text()).get("access_token")
    except (OSError, ValueError, AttributeError):
        value = None
    if not value:
        raise UsageError("no Unity Simulation token: pass --token, set USIM_ACCESS_TOKEN, or sign in "
                         "with `usim login auth` (it writes %s)" % path)
    return well_formed(_strip_bearer(value))


def well_formed(token):
    """A token an HTTP header can carry (visible ASCII), or one line that says it is not; never the
    token itself."""
    if not token or not all("!" <= c <= "~" for c in token):
        raise UsageError("the Unity Simulation token is malformed: it holds a space, a line break or a character "
                         "outside ASCII, which an HTTP header cannot carry; copy it again (usim refresh auth)")
    return token


def resolve_project_id(project_id=None):
    """``--project-id``, else ``USIM_PROJECT_ID``, else ~/.usim/project_id.txt."""
    project_id = project_id or os.environ.get("USIM_PROJECT_ID")
    if project_id:
        return project_id.strip()
    path = usim_dir() / "project_id.txt"
    try:
        value = path.read_text().strip()
    except OSError:
        value = ""
    if not value:
        raise UsageError("no Unity project id: pass --project-id, set USIM_PROJECT_ID, or activate a "
                         "project with `usim activate project` (it writes %s)" % path)
    return value


def resolve_api_url(api_url=None):
    return (api_url or os.environ.get("USIM_API_URL") or DEFAULT_API).rstrip("/")


def _strip_bearer(token):
    token = token.strip()
    return token[len("Bearer "):].strip() if token.lower().startswith("bearer ") else token


class TransferClient:
    def __init__(self, api_url, project_id, token, retries=5, backoff=1.0):
        self.base = "%s/v1/projects/%s/data_transfer" % (api_url, project_id)
        self.project_id = project_id
        self.session = requests.Session()
        self.session.headers.update({"Authorization": "Bearer %s" % token,
                                     "Content-Type": "application/json"})
        retry = Retry(total=retries, connect=retries, read=retries, status=retries,
                      backoff_factor=backoff, backoff_max=30,
                      status_forcelist=(500, 502, 503, 504), allowed_methods=("GET", "PUT"),
                      raise_on_status=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    def start(self, bucket, run_definition_id, run_execution_id):
        """PUT the transfer request; returns the response (with the transfer id and status)."""
        body = {"destination_bucket": bucket, "run_definition_id": run_definition_id,
                "run_execution_id": run_execution_id}
        return self._call("PUT", self.base, body,
                          "run definition %s / run execution %s in Unity project %s"
                          % (run_definition_id, run_execution_id, self.project_id))

    def get(self, transfer_id):
        return self._call("GET", "%s/%s" % (self.base, transfer_id), None,
                          "data transfer %s in Unity project %s" % (transfer_id, self.project_id))

    def wait(self, transfer_id, timeout, interval=10.0, on_poll=None):
        """Poll until the transfer succeeds or fails; raise on failure or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            transfer = self.get(transfer_id)
            status = transfer_status(transfer)
            if on_poll:
                on_poll(transfer)
            if status == "success":
                return transfer
            if status == "failed":
                raise LauncherError("data transfer %s failed: %s" % (
                    transfer_id, transfer.get("message") or transfer.get("error") or "no message given"))
            if time.monotonic() + interval > deadline:
                raise LauncherError("data transfer %s still %s after %ds; check it later with "
                                    "`python -m launcher transfer-status %s`"
                                    % (transfer_id, status or "pending", timeout, transfer_id))
            time.sleep(interval)

    def _call(self, method, url, body, what):
        try:
            response = self.session.request(method, url, json=body, timeout=TIMEOUT)
        except requests.RequestException as error:
            raise LauncherError("could not reach Unity Simulation at %s: %s" % (
                url.split("/v1/")[0], type(error).__name__))
        if response.status_code == 401:
            raise LauncherError("Unity Simulation refused the token (HTTP 401): it is expired or wrong; "
                                "renew it with `usim refresh auth`")
        if response.status_code == 404:
            raise LauncherError("not found (HTTP 404): %s" % what)
        if response.status_code >= 400:
            raise LauncherError("Unity Simulation answered HTTP %d for %s: %s" % (
                response.status_code, what, _message(response)))
        try:
            return response.json()
        except ValueError:
            raise LauncherError("Unity Simulation sent a response that is not JSON for %s" % what)


def transfer_id(transfer):
    for key in ("id", "data_transfer_id", "transfer_id"):
        if transfer.get(key):
            return str(transfer[key])
    raise LauncherError("the transfer response has no id: %s" % sorted(transfer))


def transfer_status(transfer):
    return str(transfer.get("status") or "").lower()


def _message(response):
    try:
        data = response.json()
        if isinstance(data, dict):
            return str(data.get("message") or data.get("error") or data)[:300]
    except ValueError:
        pass
    return response.text[:300] or response.reason
