"""From one dataset to references of its frames: what each shard writer needs, without pixels."""
import dataclasses
import json
import logging
import os
import posixpath

from tfproc import annotations, bounded, fsutil, labels, layout, published, report

_READERS = 16   # annotation files read at once; SOLO has one small file per frame

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FrameRef:
    key: str        # image path relative to the source: stable, unique in the run
    image: str      # full path of the image file
    size: int       # bytes, from the listing
    boxes: tuple    # of annotations.Box, pixels
    origin: str     # annotation file and capture that described it
    splits: tuple = ()  # the published splits it belongs to; () for a split by hash


@dataclasses.dataclass
class ParsedDataset:
    frames: list    # of FrameRef
    labels: dict    # {label_id: {names}}
    report: dict    # skipped items found while parsing


def parse_chunk(chunk, read=fsutil.read_bytes):
    """Read a chunk's definitions and annotation files; name whatever cannot be used."""
    dataset = chunk.dataset
    found = report.new()

    def skip(name, reason, detail=""):
        name, detail = fsutil.printable(name), fsutil.printable(detail)
        log.warning("skipped %s: %s%s", name, reason, ": " + detail if detail else "")
        report.add_skipped(found, name, reason, detail)

    loaded_files = {}
    try:
        definition = _definition(dataset, read, loaded_files)
    except (OSError, ValueError) as error:
        if chunk.first:     # every chunk of the dataset fails alike: name it once
            skip(_name(dataset, dataset.definitions), *_reason(error))
        return ParsedDataset([], {}, found)

    bad_labels = [name for name in definition.labels.values() if not fsutil.utf8_ok(name)]
    if bad_labels:
        if chunk.first:
            skip(_name(dataset, dataset.definitions), layout.NOT_UTF8, "label name %s" % bad_labels[0])
        return ParsedDataset([], {}, found)

    parse = _PARSERS[dataset.kind]
    frames = []
    files = []
    for rel in chunk.files:
        if fsutil.utf8_ok(rel):
            files.append(rel)
        else:
            skip(_name(dataset, rel), layout.NOT_UTF8)
    published_doc = None
    for rel, loaded in _load_all(read, dataset, files, loaded_files):
        name = _name(dataset, rel)
        if isinstance(loaded, Exception):
            skip(name, *_reason(loaded))
            continue
        if dataset.splits and rel == "annotations.json":
            published_doc = loaded
        try:
            parsed, bad = parse(loaded, definition, name, posixpath.dirname(rel))
        except annotations.BadInput as error:
            skip(name, *_reason(error))
            continue
        except (RecursionError, TypeError, AttributeError, ValueError, OverflowError) as error:
            skip(name, "malformed annotation file", "%s: %s" % (type(error).__name__, error))
            continue
        for item, error in bad:
            skip(item, *_reason(error))
        for frame in parsed:
            texts = [frame.image, frame.origin] + [box.label_name for box in frame.boxes]
            bad_text = next((t for t in texts if not fsutil.utf8_ok(t)), None)
            if bad_text is None:
                frames.append(frame)
            else:
                skip(frame.origin, layout.NOT_UTF8, bad_text)

    splits_of = _published_splits(dataset, published_doc, read, skip) if dataset.splits else None
    refs = []
    for frame in frames:
        size = chunk.images.get(frame.image)
        if size is None:
            skip(frame.origin, "missing image", _name(dataset, frame.image))
            continue
        key = _name(dataset, frame.image)
        splits = ()
        if splits_of is not None:
            splits = splits_of.get(frame.image, ())
            if not splits:
                skip(key, "in no split file", "listed in annotations.json, in none of its %d %s files"
                     % (len(dataset.splits), published.FILE_PATTERN))
                continue
        refs.append(FrameRef(key, fsutil.join(dataset.root, frame.image), size, frame.boxes, frame.origin, splits))
    if dataset.kind in (layout.REAL, layout.COCO):
        described = {frame.image for frame in frames}
        for image in sorted(set(chunk.images) - described):
            if fsutil.utf8_ok(image):
                skip(_name(dataset, image), "image without annotations")
            else:
                skip(_name(dataset, image), layout.NOT_UTF8)
    return ParsedDataset(refs, labels.dataset_labels(definition.labels, frames), found)


_PARSERS = {
    layout.LEGACY: annotations.legacy_frames,
    layout.SOLO: annotations.solo_frames,
    layout.REAL: annotations.real_frames,
    layout.COCO: annotations.coco_frames,
}


def _published_splits(dataset, doc, read, skip):
    """``{image path relative to the root: its splits}`` from the dataset's split files; problems are skipped."""
    if not isinstance(doc, list):
        return {}
    texts = {}
    for split, rel in sorted(dataset.splits.items()):
        try:
            texts[split] = read(_path(dataset, rel)).decode("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            skip(_name(dataset, rel), "unreadable file", str(error))
    members, problems = published.assign(len(doc), texts, lambda split: _name(dataset, dataset.splits[split]))
    for item, reason, detail in problems:
        skip(item, reason, detail)
    images = {}
    for index, splits in members.items():
        entry = doc[index]
        if isinstance(entry, dict) and isinstance(entry.get("file_name"), str):
            images[posixpath.join("images", entry["file_name"])] = splits
    return images


def _definition(dataset, read, loaded_files):
    """The dataset's box definition; a COCO file is kept in ``loaded_files`` for its boxes."""
    if dataset.kind == layout.REAL and not dataset.definitions:
        raise annotations.BadInput("no label names", "no %s beside annotations.json, and no --label-map"
                                   % published.DEFINITIONS)
    path = _path(dataset, dataset.definitions)
    if dataset.kind == layout.REAL and posixpath.basename(dataset.definitions) == published.DEFINITIONS:
        try:
            return annotations.BoxDefinition(frozenset(), published.label_names(read(path).decode("utf-8")))
        except (published.BadDefinitions, UnicodeDecodeError) as error:
            raise annotations.BadInput("malformed annotation definitions", str(error))
    if dataset.kind == layout.REAL:
        return annotations.label_map_definition(read(path).decode("utf-8"))
    doc = _load_json(read, path)
    if dataset.kind == layout.COCO:
        loaded_files[dataset.definitions] = doc
        return annotations.coco_definition(doc)
    return annotations.box_definition(doc, dataset.kind)


def _path(dataset, rel):
    """A file of the dataset: relative to its root, or given in full (a label map, a COCO file)."""
    return rel if fsutil.is_remote(rel) or os.path.isabs(rel) else fsutil.join(dataset.root, rel)


def _name(dataset, rel):
    if fsutil.is_remote(rel) or os.path.isabs(rel):
        return rel
    return "%s/%s" % (dataset.key_prefix, rel) if dataset.key_prefix else rel


def _load_json(read, path):
    try:
        return json.loads(read(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise annotations.BadInput("invalid JSON", str(error))
    except RecursionError:
        raise annotations.BadInput("invalid JSON", "nested too deeply to read")


def _load_all(read, dataset, files, loaded_files):
    """Yield ``(relative path, parsed JSON or the exception)`` for each annotation file, in order,
    read by a few threads at most ``2 * _READERS`` ahead of the parser."""
    def load(rel):
        if rel in loaded_files:
            return loaded_files.pop(rel)
        try:
            return _load_json(read, _path(dataset, rel))
        except (OSError, ValueError) as error:
            return error

    return bounded.ordered_map(load, files, _READERS, 2 * _READERS)


def _reason(error):
    if isinstance(error, annotations.BadInput):
        return error.reason, error.detail
    return "unreadable file", str(error)
