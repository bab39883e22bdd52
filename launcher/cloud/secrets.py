"""Secret Manager: the Unity Simulation token of a pipeline run in the cloud (no files there)."""
import base64
import re

from launcher.cloud import google_api
from launcher.errors import UsageError

_NAME = re.compile(r"^projects/[^/\s]+/secrets/[^/\s]+(/versions/[^/\s]+)?\Z")


def access(name, api_endpoint=None):
    """The text of ``projects/P/secrets/S[/versions/V]`` (default version: latest)."""
    if not _NAME.match(name or ""):
        raise UsageError("--usim-token-secret takes projects/PROJECT/secrets/SECRET[/versions/VERSION], got %r" % name)
    if "/versions/" not in name:
        name += "/versions/latest"
    api = google_api.build("secretmanager", "v1", google_api.endpoint("secretmanager", api_endpoint))
    answer = google_api.execute(api.projects().secrets().versions().access(name=name),
                                "reading secret %s" % name)
    return base64.b64decode(answer["payload"]["data"]).decode("utf-8").strip()
