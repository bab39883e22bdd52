"""Google API clients with Application Default Credentials, gcloud's endpoint overrides and one-line errors."""
import json
import os
import time

from launcher.errors import LauncherError

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
RETRIES = 5   # 429 and 5xx, with googleapiclient's exponential backoff
CREATE_ATTEMPTS = 5
HTTP_TIMEOUT = (15, 120)    # seconds to connect, to read an answer


def credentials():
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    try:
        creds, _ = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError:
        raise LauncherError("no Google credentials found: run `gcloud auth application-default login`, "
                            "or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file")
    return creds


def has_credentials():
    """Whether Application Default Credentials can be found (nothing is sent)."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    try:
        google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError:
        return False
    return True


def endpoint(api, override=None):
    """``--api-endpoint``, else gcloud's ``CLOUDSDK_API_ENDPOINT_OVERRIDES_<API>``, else the default."""
    return override or os.environ.get("CLOUDSDK_API_ENDPOINT_OVERRIDES_" + api.upper()) or None


def aiplatform_endpoint(region, override=None):
    """The Vertex AI (aiplatform v1) endpoint of ``region``, unless overridden."""
    return endpoint("aiplatform", override) or "https://%s-aiplatform.googleapis.com/" % region


def build(api, version, api_endpoint=None):
    from googleapiclient import discovery
    options = {"api_endpoint": api_endpoint} if api_endpoint else None
    return discovery.build(api, version, credentials=credentials(), client_options=options,
                           static_discovery=True, cache_discovery=False)


class Conflict(Exception):
    """HTTP 409: the resource exists already."""


def execute(request, what):
    """Run a googleapiclient request; turn failures into one line with the HTTP status and the API's message.

    HTTP 409 raises ``Conflict`` for the caller to decide.
    """
    from google.auth.exceptions import RefreshError, TransportError
    from googleapiclient.errors import HttpError
    try:
        return request.execute(num_retries=RETRIES)
    except HttpError as error:
        if error.resp.status == 409:
            raise Conflict(api_message(error))
        raise LauncherError("%s failed: HTTP %d: %s" % (what, error.resp.status, api_message(error)))
    except RefreshError as error:
        raise LauncherError("%s failed: could not get an access token (%s); run "
                            "`gcloud auth application-default login`" % (what, error.args[0] if error.args else error))
    except (TransportError, OSError) as error:
        raise LauncherError("%s failed: could not reach the API: %s" % (what, error))


def api_message(error):
    message = message_of(error.content)
    if message:
        return message
    return error._get_reason() if hasattr(error, "_get_reason") else str(error)


def message_of(content):
    """The ``error.message`` of a Google API error body, or its first 200 characters."""
    try:
        return json.loads(content)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content or "")
        return text.strip()[:200]



def pages(request, key, what, limit=None):
    """Every item under ``key`` across a list call's pages (up to ``limit``); ``request(**page)``
    builds the request for a page (``pageSize``, ``pageToken``)."""
    found, token = [], None
    while limit is None or len(found) < limit:
        page = {"pageSize": min(100, limit - len(found)) if limit else 100}
        if token:
            page["pageToken"] = token
        answer = execute(request(**page), what)
        found.extend(answer.get(key, []))
        token = answer.get("nextPageToken")
        if not token:
            break
    return found[:limit] if limit else found


def create_once(url, body, what, find):
    """POST ``body`` to ``url``: the create of a resource whose id the service assigns itself, so that
    a request sent twice makes two (two paid jobs, two schedules). No transport re-sends it on its
    own (googleapiclient and httplib2 would); after an answer is lost (no connection, 429, 5xx),
    ``find()`` looks for what the lost request may have made before each new attempt, and a
    resource found is returned instead of creating another."""
    import requests
    from google.auth.transport.requests import AuthorizedSession
    session = AuthorizedSession(credentials())
    lost = ""
    for attempt in range(CREATE_ATTEMPTS):
        if attempt:
            time.sleep(min(2 ** attempt, 30))
            found = find()
            if found:
                return found
        try:
            answer = session.post(url, json=body, timeout=HTTP_TIMEOUT)
        except requests.RequestException as error:
            lost = "could not reach the API: %s" % error
            continue
        if answer.status_code == 429 or answer.status_code >= 500:
            lost = "HTTP %d: %s" % (answer.status_code, message_of(answer.content))
            continue
        if answer.status_code >= 400:
            raise LauncherError("%s failed: HTTP %d: %s" % (what, answer.status_code, message_of(answer.content)))
        return answer.json()
    found = find()
    if found:
        return found
    raise LauncherError("%s failed after %d attempts: %s" % (what, CREATE_ATTEMPTS, lost))
