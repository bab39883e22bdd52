"""Where the data of a run lives: the one place that knows the dataset layouts.

A source is one of:
- a Unity Simulation run folder (``urn:app_params:*/<instance>/attempt:<n>/Dataset*/...``);
- a legacy Perception dataset (a folder holding ``Dataset*/annotation_definitions.json``, the
  images its captures name, relative to that folder);
- a SOLO dataset (``annotation_definitions.json`` beside ``sequence.<n>/step<k>.frame_data.json``),
  or a folder of several.

``find_datasets`` lists the source once and returns what the pipeline needs of each dataset.
"""
import collections
import dataclasses
import posixpath
import re

from tfproc import fsutil

LEGACY = "legacy"
SOLO = "solo"

DEFINITIONS = "annotation_definitions.json"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_ATTEMPT = re.compile(r"^attempt:(\d+)$")
_LEGACY_CAPTURES = re.compile(r"^captures_\d+\.json$")
_SOLO_FRAME = re.compile(r"^sequence\.[^/]+/step\d+\.frame_data\.json$")


@dataclasses.dataclass
class Dataset:
    """One dataset to convert; paths other than ``root`` are relative to ``root``."""
    root: str                 # full path of the folder the captures' filenames are relative to
    key_prefix: str           # ``root`` relative to the source ('' when the source is the dataset)
    kind: str                 # LEGACY or SOLO
    definitions: str          # the annotation_definitions.json file
    annotation_files: list    # captures_*.json (legacy) or */step*.frame_data.json (SOLO)
    images: dict              # {image path: size in bytes} for every image file under root

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data):
        return cls(**data)


@dataclasses.dataclass
class Discovery:
    datasets: list
    superseded: list          # dataset folders of earlier attempts, left out
    files_listed: int


def find_datasets(source, exclude=None):
    """List ``source`` once and describe every dataset in it (highest attempt per instance only).

    ``exclude`` is a folder under ``source`` (the output) whose files are not looked at.
    """
    source = source.rstrip("/\\")
    files = _listing(source, exclude)

    solo_roots = {_parent(_parent(p)) for p in files if _SOLO_FRAME.match(_tail(p, 2))}
    datasets = {}   # root -> [Dataset], filled below
    for path in sorted(files):
        folder, name = posixpath.split(path)
        if name != DEFINITIONS:
            continue
        parent, leaf = posixpath.split(folder)
        if leaf.startswith("Dataset"):
            datasets.setdefault(parent, []).append(Dataset(
                root=_full(source, parent), key_prefix=parent, kind=LEGACY,
                definitions=_rel(path, parent), annotation_files=[], images={}))
        elif folder in solo_roots:
            datasets.setdefault(folder, []).append(Dataset(
                root=_full(source, folder), key_prefix=folder, kind=SOLO,
                definitions=_rel(path, folder), annotation_files=[], images={}))

    for path, size in files.items():
        root = _owning_root(path, datasets)
        if root is None:
            continue
        rel = _rel(path, root)
        for dataset in datasets[root]:
            if rel.lower().endswith(IMAGE_EXTENSIONS):
                dataset.images[rel] = size
            elif _is_annotation_file(dataset, rel):
                dataset.annotation_files.append(rel)
    found = [d for group in datasets.values() for d in group]
    for dataset in found:
        dataset.annotation_files.sort()
    kept, superseded = _keep_last_attempts(found)
    return Discovery(kept, superseded, len(files))


def _listing(source, exclude):
    """Every file under ``source`` but those under ``exclude`` (the output), in one listing."""
    files = fsutil.list_tree(source)
    if exclude:
        skip = fsutil.relpath(exclude.rstrip("/\\"), source) + "/"
        files = {path: size for path, size in files.items() if not path.startswith(skip)}
    return files


def _is_annotation_file(dataset, rel):
    if dataset.kind == SOLO:
        return bool(_SOLO_FRAME.match(rel))
    folder, name = posixpath.split(rel)
    return folder == _parent(dataset.definitions) and bool(_LEGACY_CAPTURES.match(name))


def _owning_root(path, roots):
    """The deepest dataset root that holds ``path``, or None."""
    folder = _parent(path)
    while True:
        if folder in roots:
            return folder
        if not folder:
            return None
        folder = _parent(folder)


def _parent(path):
    return posixpath.dirname(path)


def _tail(path, parts):
    return "/".join(path.split("/")[-parts:])


def _rel(path, root):
    return path[len(root) + 1:] if root else path


def _full(source, root):
    return fsutil.join(source, root) if root else source


def _keep_last_attempts(datasets):
    """Only the highest ``attempt:<n>`` of each simulation instance holds its final data."""
    attempts = collections.defaultdict(dict)   # instance -> {attempt number: [datasets]}
    kept = []
    for dataset in datasets:
        parts = dataset.key_prefix.split("/")
        where = [i for i, part in enumerate(parts) if _ATTEMPT.match(part)]
        if not where:
            kept.append(dataset)
            continue
        i = where[-1]
        instance = "/".join(parts[:i])
        number = int(_ATTEMPT.match(parts[i]).group(1))
        attempts[instance].setdefault(number, []).append(dataset)
    superseded = []
    for instance in sorted(attempts):
        by_number = attempts[instance]
        last = max(by_number)
        kept.extend(by_number[last])
        for number in sorted(by_number):
            if number != last:
                superseded.extend(d.key_prefix for d in by_number[number])
    kept.sort(key=lambda d: (d.key_prefix, d.definitions))
    return kept, superseded


REAL = "real"
COCO = "coco"


def find_real_datasets(source, label_map, exclude=None):
    """Every ``annotations.json`` (UnityGroceries-Real list form) under ``source`` with ``images/`` beside it."""
    source = source.rstrip("/\\")
    files = _listing(source, exclude)
    datasets = {}   # folder of an annotations.json -> Dataset
    for path in sorted(files):
        folder, name = posixpath.split(path)
        if name == "annotations.json":
            datasets[folder] = Dataset(root=_full(source, folder), key_prefix=folder, kind=REAL,
                                       definitions=label_map, annotation_files=["annotations.json"], images={})
    for path, size in files.items():
        root = _owning_root(path, datasets)
        if root is not None and path.lower().endswith(IMAGE_EXTENSIONS):
            rel = _rel(path, root)
            if rel.startswith("images/"):
                datasets[root].images[rel] = size
    datasets = [datasets[folder] for folder in sorted(datasets)]
    return Discovery(datasets, [], len(files))


def coco_dataset(instances, images_dir, exclude=None):
    """A COCO detection file and the folder of its images, as one dataset."""
    images_dir = images_dir.rstrip("/\\")
    files = _listing(images_dir, exclude)
    images = {p: size for p, size in files.items() if p.lower().endswith(IMAGE_EXTENSIONS)}
    datasets = [Dataset(root=images_dir, key_prefix="", kind=COCO, definitions=instances,
                        annotation_files=[instances], images=images)] if files else []
    return Discovery(datasets, [], len(files))
