"""File access through Beam's FileSystems, so local paths and gs:// share one code path."""
import json
import math
import os
import signal
import stat
import uuid

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_RAW = CompressionTypes.UNCOMPRESSED
MAX_INPUT_BYTES = 1 << 30      # no annotation file or image is larger; /dev/zero would never end

# For tests: the Nth change to a local file (write, rename, unlink) kills this process with
# SIGKILL, so a test can kill a run at every step of its commit and its recovery; with the trace
# on, each change is named on stderr.
_KILL_AT = int(os.environ.get("TFPROC_KILL_AT_CHANGE", "0") or 0)
_TRACE = bool(os.environ.get("TFPROC_TRACE_CHANGES"))
_changes = [0]


class NotAFile(OSError):
    """An input that is not a regular file of a sane size (a FIFO, a device, a folder, a huge file)."""


def _changing(path):
    if _KILL_AT or _TRACE:
        _changes[0] += 1
        if _TRACE:
            os.write(2, ("tfproc change %d %s\n" % (_changes[0], printable(path))).encode())
        if _changes[0] == _KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)


def utf8_ok(text):
    """Whether ``text`` can be written as UTF-8 (names read from disk or JSON may hold lone surrogates)."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def printable(text):
    """``text`` with bytes that are not UTF-8 shown as \\xNN, for messages and reports."""
    if utf8_ok(text):
        return text
    try:        # bytes of a file name, decoded with surrogateescape
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:      # a lone surrogate of a JSON escape such as "\ud800"
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def is_remote(path):
    return "://" in path


def join(base, *parts):
    return FileSystems.join(base, *parts) if parts else base


def relpath(path, base):
    """``path`` relative to ``base``, with '/' separators, for local and remote paths alike."""
    rel = path[len(base):] if path.startswith(base) else path
    return rel.replace("\\", "/").lstrip("/")


def list_tree(root):
    """Every file under ``root`` as ``{relative path: size in bytes}``, in one listing."""
    return dict(iter_tree(root))


def iter_tree(root, sizes=True):
    """Yield ``(path relative to root, size in bytes)`` of every file under ``root``, as listed.

    Streams (a page at a time on gs://), so a listing of millions of files is never held whole
    here. No glob: any character in a path, ``[`` or ``*`` included, is taken as it is. With
    ``sizes=False`` a local listing skips the stat of each file (the size is then None).
    """
    root = root.rstrip("/\\")
    if root.startswith("gs://"):
        yield from _iter_gcs(root)
    elif is_remote(root):
        for match in FileSystems.match([join(root, "**")])[0].metadata_list:
            yield relpath(match.path, root), match.size_in_bytes
    else:
        yield from _iter_local(root, sizes)


def _iter_local(root, sizes):
    if os.path.isfile(root):
        return
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        rel_folder = os.path.relpath(folder, root).replace(os.sep, "/")
        prefix = "" if rel_folder == "." else rel_folder + "/"
        for name in sorted(names):
            size = None
            if sizes:
                try:
                    size = os.stat(os.path.join(folder, name)).st_size
                except OSError:     # removed while listing
                    continue
            yield prefix + name, size


def _iter_gcs(root):
    bucket, _, prefix = root[len("gs://"):].partition("/")
    prefix = prefix + "/" if prefix else ""
    for blob in storage_client().list_blobs(bucket, prefix=prefix, page_size=1000,
                                            fields="items(name,size),nextPageToken"):
        if not blob.name.endswith("/"):
            yield blob.name[len(prefix):], int(blob.size or 0)


_CLIENT = []


def storage_client():
    """One google-cloud-storage client per process (it honours STORAGE_EMULATOR_HOST)."""
    if not _CLIENT:
        from google.cloud import storage
        _CLIENT.append(storage.Client())
    return _CLIENT[0]


def is_file(path):
    """Whether ``path`` is an existing file (not a folder)."""
    if not is_remote(path):
        return os.path.isfile(path)
    return FileSystems.exists(path) and not path.endswith("/")


def rename_many(sources, destinations):
    """Move files in batches (GCS copies and deletes 100 at a time); destinations are replaced."""
    sources, destinations = list(sources), list(destinations)
    if sources and is_remote(sources[0]):
        FileSystems.rename(sources, destinations)
        return
    for source, destination in zip(sources, destinations):
        _changing(destination)
        os.replace(source, destination)
    for folder in sorted({os.path.dirname(d) for d in destinations}):
        sync_folder(folder)


def delete_many(paths):
    paths = list(paths)
    if paths and is_remote(paths[0]):
        FileSystems.delete(paths)
        return
    for path in paths:
        _changing(path)
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _libc_sync_file_range():
    try:
        import ctypes
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):      # not Linux
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function


_SYNC_FILE_RANGE = _libc_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(handle, start, length):
    """Have the kernel start writing bytes ``[start, start + length)`` of the open local file
    ``handle`` to disk now, without waiting for them, so that the fsync which makes the file
    durable finds little left to write. Does nothing for other files or without the call."""
    if _SYNC_FILE_RANGE is None or length <= 0:
        return
    try:
        fd = handle.fileno()
    except (OSError, ValueError, AttributeError):     # io.UnsupportedOperation: not a local file
        return
    handle.flush()
    _SYNC_FILE_RANGE(fd, start, length, _SYNC_FILE_RANGE_WRITE)


def sync_files(paths):
    """Flush the bytes of local files, and their folders' entries, to disk; gs:// needs nothing."""
    paths = [p for p in paths if not is_remote(p)]
    for path in paths:
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    for folder in sorted({os.path.dirname(p) for p in paths}):
        sync_folder(folder)


def sync_folder(folder):
    """Make the renames and unlinks in a local folder durable."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def read_bytes(path, limit=MAX_INPUT_BYTES):
    """The whole file. A local path must be a regular file of at most ``limit`` bytes: a FIFO, a
    device or a folder raises NotAFile at once instead of blocking or reading forever."""
    if not is_remote(path):
        return _read_local(path, limit)
    with FileSystems.open(path, compression_type=_RAW) as f:
        return f.read()


def _read_local(path, limit):
    handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device" if stat.S_ISCHR(info.st_mode)
                    or stat.S_ISBLK(info.st_mode) else "a folder" if stat.S_ISDIR(info.st_mode)
                    else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a file")
            raise NotAFile("%s is %s, not a regular file" % (printable(path), kind))
        if info.st_size > limit:
            raise NotAFile("%s is %d bytes, more than the %d an input file may have"
                           % (printable(path), info.st_size, limit))
        chunks, left = [], info.st_size + 1     # one byte more: a file that grew is read whole
        while left > 0:
            chunk = os.read(handle, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise NotAFile("%s grew past %d bytes while being read" % (printable(path), limit))
        return data
    finally:
        os.close(handle)


def read_json(path):
    return json.loads(read_bytes(path))


def read_json_or_none(path):
    """The JSON document at ``path``, or None when there is no such file."""
    return read_json(path) if is_file(path) else None


def json_bytes(value):
    """``value`` as indented JSON with sorted keys; NaN and infinities become null (JSON has no NaN)."""
    return (json.dumps(_finite(value), indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def write_json(path, value):
    """``json_bytes(value)`` at ``path``, whole or absent."""
    write_atomically(path, json_bytes(value))


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def makedirs(path):
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def write_atomically(path, data, temp_folder=None):
    """Write ``data`` to ``path`` so that ``path`` is whole or absent.

    On object stores an upload appears whole when it ends. Locally the bytes go to a temporary
    file (in ``temp_folder``, e.g. the run's staging folder, so a kill leaves nothing beside
    ``path``; else beside it), are flushed to disk, and replace ``path`` in one rename.
    """
    if is_remote(path):
        with FileSystems.create(path, compression_type=_RAW) as f:
            f.write(data)
        return
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    temp = os.path.join(temp_folder or folder, "%s.tmp-%s" % (os.path.basename(path), uuid.uuid4().hex[:8]))
    _changing(temp)
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    _changing(path)
    os.replace(temp, path)
    sync_folder(folder)


def move(source, destination):
    """Rename a finished file into place. Locally this makes nothing durable: ``sync_files`` does,
    once for all the files a commit will need."""
    if not is_remote(source):
        _changing(destination)
        os.replace(source, destination)
        return
    if FileSystems.exists(destination):
        FileSystems.delete([destination])
    FileSystems.rename([source], [destination])


def delete_tree(path, first=()):
    """Delete ``path`` and everything under it, if it exists; the files named in ``first``
    (relative to ``path``) go before all others."""
    if is_remote(path):
        files = list_tree(path)
        delete_many([join(path, rel) for rel in first if rel in files])
        delete_many([join(path, rel) for rel in files if rel not in first])
        return
    if not os.path.isdir(path):
        if os.path.lexists(path):
            _changing(path)
            os.remove(path)
        return
    delete_many([os.path.join(path, rel) for rel in first if os.path.lexists(os.path.join(path, rel))])
    for folder, dirs, names in os.walk(path, topdown=False):
        for name in names:
            _changing(os.path.join(folder, name))
            try:
                os.remove(os.path.join(folder, name))
            except FileNotFoundError:
                pass
        for name in dirs:
            try:
                os.rmdir(os.path.join(folder, name))
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass
