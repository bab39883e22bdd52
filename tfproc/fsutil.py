"""File access through Beam's FileSystems, so local paths and gs:// share one code path."""
import json
import os
import posixpath
import shutil
import uuid

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_RAW = CompressionTypes.UNCOMPRESSED


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
        os.replace(source, destination)


def delete_many(paths):
    paths = list(paths)
    if paths and is_remote(paths[0]):
        FileSystems.delete(paths)
        return
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def read_bytes(path):
    with FileSystems.open(path, compression_type=_RAW) as f:
        return f.read()


def read_json(path):
    return json.loads(read_bytes(path))


def makedirs(path):
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def write_atomically(path, data):
    """Write ``data`` to ``path`` through a temporary name, so ``path`` is whole or absent."""
    makedirs(posixpath.dirname(path) if is_remote(path) else FileSystems.split(path)[0])
    temp = "%s.tmp-%s" % (path, uuid.uuid4().hex[:8])
    with FileSystems.create(temp, compression_type=_RAW) as f:
        f.write(data)
    move(temp, path)


def move(source, destination):
    if not is_remote(source):
        os.replace(source, destination)
        return
    if FileSystems.exists(destination):
        FileSystems.delete([destination])
    FileSystems.rename([source], [destination])


def delete_tree(path):
    """Delete ``path`` and everything under it, if it exists."""
    if not is_remote(path):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
        return
    delete_many([join(path, rel) for rel in list_tree(path)])
