"""Reading a conversion output and checking a job folder, on gs:// (google-cloud-storage) or locally."""
import os

from launcher.errors import LauncherError, UsageError


def _split(path):
    bucket, _, prefix = path[len("gs://"):].partition("/")
    return bucket, prefix


def _client(project=None):
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage
    try:
        return storage.Client(project=project)
    except DefaultCredentialsError:
        raise LauncherError("no Google credentials found: run `gcloud auth application-default login`")


def read_text(path, project=None, missing_ok=False):
    if not path.startswith("gs://"):
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            if missing_ok:
                return None
            raise UsageError("%s does not exist" % path)
    from google.api_core import exceptions
    bucket, name = _split(path)
    try:
        return _client(project).bucket(bucket).blob(name).download_as_text()
    except exceptions.NotFound:
        if missing_ok:
            return None
        raise UsageError("%s does not exist" % path)
    except exceptions.GoogleAPIError as error:
        raise LauncherError("could not read %s: %s" % (path, error))


def first_file(folder, project=None, ignore=None):
    """The name of some file under ``folder`` (gs://), or None if it holds none; files under the
    subfolder ``ignore`` (e.g. "packages/") do not count."""
    from google.api_core import exceptions
    bucket, prefix = _split(folder.rstrip("/"))
    prefix = prefix + "/" if prefix else ""
    try:
        for blob in _client(project).list_blobs(bucket, prefix=prefix, max_results=None if ignore else 1):
            if ignore and blob.name[len(prefix):].startswith(ignore):
                continue
            return "gs://%s/%s" % (bucket, blob.name)
    except exceptions.NotFound:
        raise UsageError("bucket %s does not exist" % bucket)
    except exceptions.GoogleAPIError as error:
        raise LauncherError("could not list %s: %s" % (folder, error))
    return None


def join(folder, name):
    return folder.rstrip("/") + "/" + name if folder.startswith("gs://") else os.path.join(folder, name)


def write_bytes(path, data, project=None):
    """Upload ``data`` to a gs:// path."""
    from google.api_core import exceptions
    bucket, name = _split(path)
    try:
        _client(project).bucket(bucket).blob(name).upload_from_string(data)
    except exceptions.NotFound:
        raise UsageError("bucket %s does not exist" % bucket)
    except exceptions.GoogleAPIError as error:
        raise LauncherError("could not upload %s: %s" % (path, error))
