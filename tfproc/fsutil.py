"""File access through Beam's FileSystems, so local paths and gs:// share one code path."""
import json
import posixpath
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
    root = root.rstrip("/\\")
    if not is_remote(root) and not FileSystems.exists(root):
        return {}
    pattern = join(root, "**")
    files = {}
    for match in FileSystems.match([pattern])[0].metadata_list:
        files[relpath(match.path, root)] = match.size_in_bytes
    return files


def read_bytes(path):
    with FileSystems.open(path, compression_type=_RAW) as f:
        return f.read()


def read_json(path):
    return json.loads(read_bytes(path))


def makedirs(path):
    if not is_remote(path) and not FileSystems.exists(path):
        FileSystems.mkdirs(path)


def write_atomically(path, data):
    """Write ``data`` to ``path`` through a temporary name, so ``path`` is whole or absent."""
    makedirs(posixpath.dirname(path) if is_remote(path) else FileSystems.split(path)[0])
    temp = "%s.tmp-%s" % (path, uuid.uuid4().hex[:8])
    with FileSystems.create(temp, compression_type=_RAW) as f:
        f.write(data)
    move(temp, path)


def move(source, destination):
    if FileSystems.exists(destination):
        FileSystems.delete([destination])
    FileSystems.rename([source], [destination])


def delete_tree(path):
    """Delete ``path`` and everything under it, if it exists."""
    files = [join(path, rel) for rel in list_tree(path)]
    if files:
        FileSystems.delete(files)
    if not is_remote(path) and FileSystems.exists(path):
        FileSystems.delete([path])
