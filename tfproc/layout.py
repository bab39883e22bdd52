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

from tfproc import fsutil, published

LEGACY = "legacy"
SOLO = "solo"
REAL = "real"       # photos: annotations.json with images/ beside it
COCO = "coco"       # photos: a COCO detection file and its images folder

DEFINITIONS = "annotation_definitions.json"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_ATTEMPT = re.compile(r"^attempt:(\d+)$")
_LEGACY_CAPTURES = re.compile(r"^captures_\d+\.json$")
_SOLO_FRAME = re.compile(r"^sequence\.[^/]+/step\d+\.frame_data\.json$")


@dataclasses.dataclass
class Dataset:
    """One dataset to convert; paths other than ``root`` are relative to ``root``.

    Discovery keeps only this much of each dataset; its files are listed by the pipeline
    (``list_dataset``), on a worker, so the launching machine never holds a run's whole listing.
    """
    root: str                 # full path of the folder the captures' filenames are relative to
    key_prefix: str           # ``root`` relative to the source ('' when the source is the dataset)
    kind: str                 # LEGACY, SOLO, REAL or COCO
    definitions: str          # the annotation_definitions.json file (a label map or COCO file for photos)
    skip: list = dataclasses.field(default_factory=list)   # folders under root that are not its own
    splits: dict = dataclasses.field(default_factory=dict)  # REAL: {split: its published split file}

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
    skipped: list = dataclasses.field(default_factory=list)   # [name, reason, detail] found while listing
    split_names: tuple = ()   # the published splits of the datasets; () for a split by hash


@dataclasses.dataclass
class Chunk:
    """A share of one dataset's annotation files, parsed by one worker."""
    dataset: Dataset
    files: list               # annotation files, relative to the dataset root
    images: dict              # {image path relative to the root: size} the files may name
    first: bool = True        # the dataset's first chunk names dataset-wide faults once


# Annotation files per chunk: SOLO has one small file per frame, legacy ~150 captures per file.
CHUNK_FILES = {SOLO: 500, LEGACY: 8}


def find_datasets(source, exclude=None):
    """List ``source`` once, streaming, and describe every dataset in it (highest attempt per
    instance only). ``exclude`` is a folder under ``source`` (the output) whose files are not looked at.
    """
    source = source.rstrip("/\\")
    definitions, solo_roots, captures = [], set(), {}
    attempts = _Attempts()
    files = 0
    for path, _ in _listing(source, exclude):
        files += 1
        folder, _, name = path.rpartition("/")
        attempts.add(folder)
        if not name.endswith(".json"):
            continue
        if name == DEFINITIONS:
            definitions.append(path)
        elif _SOLO_FRAME.match(_tail(path, 2)):
            solo_roots.add(_parent(folder))
        elif _LEGACY_CAPTURES.match(name):
            captures.setdefault(folder, path)
    found = []
    for path in sorted(definitions):
        folder = _parent(path)
        parent, leaf = posixpath.split(folder)
        if leaf.startswith("Dataset"):
            found.append(Dataset(_full(source, parent), parent, LEGACY, _rel(path, parent)))
        elif folder in solo_roots:
            found.append(Dataset(_full(source, folder), folder, SOLO, _rel(path, folder)))
    _set_skips(found, source, exclude)
    kept, superseded, skipped = attempts.keep_last(found, captures, set(map(_parent, definitions)))
    kept = _named_in_utf8(kept, skipped)
    return Discovery(kept, [fsutil.printable(s) for s in superseded], files, skipped)


NOT_UTF8 = "name not valid UTF-8"


def _named_in_utf8(datasets, skipped):
    """The datasets whose folder names are UTF-8; the others are named in ``skipped`` (records,
    label maps and Beam's strings are UTF-8, and a name that is not cannot be written)."""
    kept = []
    for dataset in datasets:
        if fsutil.utf8_ok(dataset.root) and fsutil.utf8_ok(dataset.definitions):
            kept.append(dataset)
        else:
            skipped.append([fsutil.printable(dataset.key_prefix or dataset.root), NOT_UTF8,
                            "rename the folder; its other datasets are converted"])
    return kept


def list_dataset(dataset):
    """``(annotation files, {image: size})`` of a dataset, in one listing of its root."""
    annotation_files, images = [], {}
    skip = tuple(folder.rstrip("/") + "/" for folder in dataset.skip)
    for rel, size in fsutil.iter_tree(dataset.root):
        if skip and rel.startswith(skip):
            continue
        if rel.lower().endswith(IMAGE_EXTENSIONS):
            if dataset.kind != REAL or rel.startswith("images/"):
                images[rel] = size
        elif _is_annotation_file(dataset, rel):
            annotation_files.append(rel)
    if dataset.kind == COCO:
        annotation_files = [dataset.definitions]
    annotation_files.sort()
    return annotation_files, images


def chunks(dataset, annotation_files, images):
    """Split a dataset's annotation work into chunks that fan out across workers.

    A SOLO chunk carries only the images of its own sequence folders (a frame's image lies beside
    its frame_data.json); other kinds carry the dataset's image listing.
    """
    if dataset.kind in (REAL, COCO) or not annotation_files:
        return [Chunk(dataset, list(annotation_files), images)]
    by_folder = collections.defaultdict(dict)
    if dataset.kind == SOLO:
        for rel, n in images.items():
            by_folder[_parent(rel)][rel] = n
    size = CHUNK_FILES[dataset.kind]
    out = []
    for start in range(0, len(annotation_files), size):
        files = annotation_files[start:start + size]
        if dataset.kind == SOLO:
            mine = {}
            for folder in {_parent(f) for f in files}:
                mine.update(by_folder.get(folder, {}))
        else:
            mine = images
        out.append(Chunk(dataset, files, mine, first=not out))
    return out


def _set_skips(datasets, source, exclude):
    """Each dataset skips the roots of datasets nested in it, and the output folder."""
    out = fsutil.relpath(exclude.rstrip("/\\"), source) if exclude else None
    roots = sorted(d.key_prefix for d in datasets)
    for dataset in datasets:
        prefix = dataset.key_prefix + "/" if dataset.key_prefix else ""
        inner = [r for r in roots if r != dataset.key_prefix and r.startswith(prefix)]
        if out and out.startswith(prefix):
            inner.append(out)
        dataset.skip = [r[len(prefix):] for r in sorted(set(inner))]


def _listing(source, exclude):
    """Every file under ``source`` but those under ``exclude`` (the output), streamed; no sizes."""
    skip = fsutil.relpath(exclude.rstrip("/\\"), source) + "/" if exclude else None
    for path, size in fsutil.iter_tree(source, sizes=False):
        if skip is None or not path.startswith(skip):
            yield path, size


def _is_annotation_file(dataset, rel):
    if dataset.kind == SOLO:
        return bool(_SOLO_FRAME.match(rel))
    if dataset.kind == REAL:
        return rel == "annotations.json"
    if dataset.kind == COCO:
        return False
    folder, name = posixpath.split(rel)
    return folder == _parent(dataset.definitions) and bool(_LEGACY_CAPTURES.match(name))


def _parent(path):
    return posixpath.dirname(path)


def _tail(path, parts):
    return "/".join(path.split("/")[-parts:])


def _rel(path, root):
    return path[len(root) + 1:] if root else path


def _full(source, root):
    return fsutil.join(source, root) if root else source


def _attempt_of(path):
    """``(instance, attempt number)`` of a path under ``.../attempt:<n>/``, or None."""
    parts = path.split("/")
    where = [i for i, part in enumerate(parts) if _ATTEMPT.match(part)]
    if not where:
        return None
    i = where[-1]
    return "/".join(parts[:i]), int(_ATTEMPT.match(parts[i]).group(1))


class _Attempts:
    """Only the highest ``attempt:<n>`` of each simulation instance holds its final data.

    The highest attempt is the one any file lies in, whether or not it holds a dataset: an earlier
    attempt never stands in for a final one that is incomplete; such a final attempt is named as
    skipped (a broken one is named by the parser).
    """

    def __init__(self):
        self.highest = {}   # instance -> highest attempt number among all files
        self.files = collections.Counter()   # (instance, attempt) -> files
        self._last_folder, self._last = None, None

    def add(self, folder):
        """Count a file in ``folder``; consecutive files of one folder cost one look."""
        if folder != self._last_folder:
            self._last_folder, self._last = folder, _attempt_of(folder) if "attempt:" in folder else None
        found = self._last
        if found:
            self.files[found] += 1
            if found[1] > self.highest.get(found[0], -1):
                self.highest[found[0]] = found[1]

    def keep_last(self, datasets, captures, definition_folders):
        kept, superseded, with_dataset = [], [], set()
        for dataset in datasets:
            found = _attempt_of(dataset.key_prefix)
            if found is None:
                kept.append(dataset)
            elif found[1] == self.highest[found[0]]:
                kept.append(dataset)
                with_dataset.add(found[0])
            else:
                superseded.append(dataset.key_prefix)
        skipped = []
        for instance in sorted(set(self.highest) - with_dataset):
            number = self.highest[instance]
            folder = "%s/attempt:%d" % (instance, number) if instance else "attempt:%d" % number
            orphans = sorted(path for where, path in captures.items()
                             if where.startswith(folder + "/") and where not in definition_folders)
            detail = ("%s has no %s beside it" % (orphans[0], DEFINITIONS) if orphans
                      else "no Dataset*/%s among its %d file(s)" % (DEFINITIONS, self.files[(instance, number)]))
            skipped.append([folder, "final attempt without a dataset",
                            detail + "; earlier attempts are not used in its place"])
        kept.sort(key=lambda d: (d.key_prefix, d.definitions))
        return kept, sorted(superseded), skipped


def find_real_datasets(source, label_map=None, exclude=None):
    """Every ``annotations.json`` (UnityGroceries-Real list form) under ``source`` with ``images/`` beside it.

    Each dataset's labels come from ``label_map`` if given, else from the ``annotation_definitions.json``
    beside it (``definitions`` is then that file, or '' if there is none); the published split files
    beside it (``groceries_real_<split>.txt``) become its ``splits``.
    """
    source = source.rstrip("/\\")
    folders, beside, files = [], collections.defaultdict(set), 0
    for path, _ in _listing(source, exclude):
        files += 1
        folder, name = posixpath.split(path)
        if name == "annotations.json":
            folders.append(folder)
        elif name == published.DEFINITIONS or published.split_name(name):
            beside[folder].add(name)
    found = []
    for folder in sorted(folders):
        names = beside.get(folder, set())
        definitions = label_map or (published.DEFINITIONS if published.DEFINITIONS in names else "")
        splits = {published.split_name(n): n for n in sorted(names) if published.split_name(n)}
        found.append(Dataset(_full(source, folder), folder, REAL, definitions, splits=splits))
    _set_skips(found, source, exclude)
    skipped = []
    found = _named_in_utf8(found, skipped)
    return Discovery(found, [], files, skipped)


def coco_dataset(instances, images_dir, exclude=None):
    """A COCO detection file and the folder of its images, as one dataset."""
    images_dir = images_dir.rstrip("/\\")
    files = sum(1 for _ in _listing(images_dir, exclude))
    datasets = [Dataset(images_dir, "", COCO, instances)] if files else []
    _set_skips(datasets, images_dir, exclude)
    return Discovery(datasets, [], files)
