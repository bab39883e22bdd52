"""Reading 2D boxes out of Perception annotation files (legacy JSON and SOLO).

Plain functions: each returns what it found and names what it could not use.
"""
import dataclasses
import math
import posixpath

LEGACY_BOX_NAMES = {"bounding box", "2d bounding box"}
# The label map's ids are int32 (StringIntLabelMapItem.id); one id is kept free for the +1 shift.
MAX_LABEL_ID = 2 ** 31 - 2
LEGACY_BOX_ID = "f9f22e05-443f-4602-a422-ebe4ea9b55cb"
SOLO_BOX_TYPE = "BoundingBox2DAnnotation"
SOLO_CAMERA_TYPE = "RGBCamera"


class BadInput(ValueError):
    """An input item that cannot be used: ``reason`` is its category, the message the details."""

    def __init__(self, reason, detail=""):
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class Box:
    label_id: int
    label_name: str     # as the box names it ('' when it does not)
    x: float
    y: float
    width: float
    height: float


@dataclasses.dataclass(frozen=True)
class Frame:
    image: str          # image path relative to the dataset root
    boxes: tuple        # of Box, in pixels, top-left origin, as the dataset wrote them
    origin: str         # where it was described: annotation file and capture id


@dataclasses.dataclass(frozen=True)
class BoxDefinition:
    ids: frozenset      # annotation definition ids of the 2D box labeler
    labels: dict        # {label_id: label_name} from the definition's spec


def box_definition(definitions, kind):
    """Find the 2D bounding box definition in a parsed annotation_definitions.json."""
    if kind == "legacy":
        entries = definitions.get("annotation_definitions")
        matches = [d for d in entries or [] if isinstance(d, dict) and _is_legacy_box(d)]
    else:
        entries = definitions.get("annotationDefinitions")
        matches = [d for d in entries or [] if isinstance(d, dict)
                   and str(d.get("@type", "")).endswith(SOLO_BOX_TYPE)]
    if entries is None:
        raise BadInput("malformed annotation definitions", "no annotation definitions list")
    if not matches:
        raise BadInput("no 2D bounding box definition")
    labels = {}
    for definition in matches:
        for item in definition.get("spec") or []:
            try:
                label_id, name = item["label_id"], item["label_name"]
            except (KeyError, TypeError):
                raise BadInput("malformed annotation definitions", "label spec %s" % _short(item))
            if not is_label_id(label_id) or not isinstance(name, str):
                raise BadInput("malformed annotation definitions",
                               "label id must be an integer in [0, %d] and its name a string: %s"
                               % (MAX_LABEL_ID, _short(item)))
            labels[label_id] = name
    return BoxDefinition(frozenset(str(d.get("id")) for d in matches), labels)


def _is_legacy_box(definition):
    name = str(definition.get("name", "")).strip().lower()
    return name in LEGACY_BOX_NAMES or str(definition.get("id", "")).lower() == LEGACY_BOX_ID


def legacy_frames(captures_doc, definition, origin, folder=""):
    """Frames of a legacy captures_*.json document. Returns ([Frame], [(name, BadInput)]).

    ``origin`` names the file in messages; image filenames are relative to the dataset root.
    """
    captures = captures_doc.get("captures") if isinstance(captures_doc, dict) else None
    if not isinstance(captures, list):
        raise BadInput("malformed annotation file", "no captures list")
    frames, bad = [], []
    for index, capture in enumerate(captures):
        name = "%s#%s" % (origin, capture.get("id", index) if isinstance(capture, dict) else index)
        try:
            frame = _legacy_frame(capture, definition, name)
        except BadInput as error:
            bad.append((name, error))
            continue
        if frame is not None:
            frames.append(frame)
    return frames, bad


def _legacy_frame(capture, definition, name):
    if not isinstance(capture, dict):
        raise BadInput("malformed capture", "not an object")
    sensor = capture.get("sensor") or {}
    filename = capture.get("filename")
    modality = sensor.get("modality") if isinstance(sensor, dict) else None
    if modality not in (None, "camera"):
        return None     # lidar and other sensors
    _check_image_name(filename)
    boxes = []
    for annotation in capture.get("annotations") or []:
        if isinstance(annotation, dict) and str(annotation.get("annotation_definition")) in definition.ids:
            boxes.extend(_box(value, "label_id", "label_name", _legacy_xywh) for value in annotation.get("values") or [])
    return Frame(image=filename, boxes=tuple(boxes), origin=name)


def solo_frames(frame_doc, definition, origin, folder):
    """Frames (one per RGB camera image) of a SOLO step*.frame_data.json. Returns ([Frame], [(name, BadInput)]).

    ``origin`` names the file in messages; image filenames are relative to ``folder`` (the file's
    sequence folder, relative to the dataset root).
    """
    captures = frame_doc.get("captures") if isinstance(frame_doc, dict) else None
    if not isinstance(captures, list):
        raise BadInput("malformed annotation file", "no captures list")
    frames, bad = [], []
    for index, capture in enumerate(captures):
        if not isinstance(capture, dict) or not str(capture.get("@type", "")).endswith(SOLO_CAMERA_TYPE):
            continue
        name = "%s#%s" % (origin, capture.get("id", index))
        try:
            filename = capture.get("filename")
            _check_image_name(filename)
            boxes = []
            for annotation in capture.get("annotations") or []:
                if isinstance(annotation, dict) and _is_solo_box(annotation, definition):
                    boxes.extend(_box(value, "labelId", "labelName", _solo_xywh) for value in annotation.get("values") or [])
            frames.append(Frame(image=posixpath.join(folder, filename), boxes=tuple(boxes), origin=name))
        except BadInput as error:
            bad.append((name, error))
    return frames, bad


def label_map_definition(text):
    """A BoxDefinition from a ``StringIntLabelMap`` text proto (for photos whose boxes give ids only)."""
    from tfproc import labels
    try:
        return BoxDefinition(frozenset(), labels.parse_label_map(text))
    except labels.BadLabelMap as error:
        raise BadInput("malformed label map", str(error))


def real_frames(doc, definition, origin, folder):
    """Frames of a UnityGroceries-Real ``annotations.json``: a list of {file_name, annotations: [{label_id, bbox}]}.

    Photos are in ``images/`` beside the file.
    """
    if not isinstance(doc, list):
        raise BadInput("malformed annotation file", "not a list of photos")
    frames, bad = [], []
    for index, item in enumerate(doc):
        name = "%s#%s" % (origin, item.get("file_name", index) if isinstance(item, dict) else index)
        try:
            if not isinstance(item, dict) or not _is_image_name(item.get("file_name")):
                raise BadInput("malformed capture", "no image file_name")
            boxes = tuple(_coco_box(value, "label_id", definition) for value in item.get("annotations") or [])
            frames.append(Frame(image=posixpath.join(folder, "images", item["file_name"]), boxes=boxes, origin=name))
        except BadInput as error:
            bad.append((name, error))
    return frames, bad


def coco_definition(doc):
    """Class ids and names from a COCO file's categories."""
    try:
        labels = {c["id"]: c["name"] for c in doc["categories"]}
    except (KeyError, TypeError):
        raise BadInput("malformed annotation definitions", "COCO categories need id and name")
    if not all(is_label_id(i) and isinstance(n, str) for i, n in labels.items()):
        raise BadInput("malformed annotation definitions",
                       "COCO category ids must be integers in [0, %d] and names strings" % MAX_LABEL_ID)
    return BoxDefinition(frozenset(), labels)


def coco_frames(doc, definition, origin, folder=""):
    """Frames of a COCO detection file; image file names are relative to the images folder."""
    try:
        images = {image["id"]: image["file_name"] for image in doc["images"]}
        annotations = doc.get("annotations") or []
    except (KeyError, TypeError):
        raise BadInput("malformed annotation file", "COCO images need id and file_name")
    boxes, bad, broken = {image_id: [] for image_id in images}, [], set()
    for index, value in enumerate(annotations):
        image_id = value.get("image_id") if isinstance(value, dict) else None
        name = "%s#annotation:%s" % (origin, value.get("id", index) if isinstance(value, dict) else index)
        try:
            if image_id not in images:
                raise BadInput("malformed box", "no image with id %r" % (image_id,))
            boxes[image_id].append(_coco_box(value, "category_id", definition))
        except BadInput as error:
            bad.append((name, error))
            broken.add(image_id)    # like a capture with a malformed box, the image is left out
    frames = [Frame(image=images[i], boxes=tuple(boxes[i]), origin="%s#image:%s" % (origin, i))
              for i in images if i not in broken]
    return frames, bad


def _coco_box(value, label_key, definition):
    try:
        x, y, width, height = (_number(n) for n in value["bbox"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise BadInput("malformed box", _short(value))
    label_id = value.get(label_key)
    if label_id not in definition.labels:
        raise BadInput("malformed box", "label %r is not in the label map: %s" % (label_id, _short(value)))
    return _box({"label_id": label_id, "label_name": definition.labels[label_id],
                 "x": x, "y": y, "width": width, "height": height}, "label_id", "label_name", _legacy_xywh)


def _is_solo_box(annotation, definition):
    return (str(annotation.get("id")) in definition.ids
            or str(annotation.get("@type", "")).endswith(SOLO_BOX_TYPE))


def _is_image_name(filename):
    return isinstance(filename, str) and filename.lower().endswith((".png", ".jpg", ".jpeg"))


def _check_image_name(filename):
    """A camera capture must name a PNG or JPEG file; anything else is reported, not ignored."""
    if not isinstance(filename, str) or not filename:
        raise BadInput("malformed capture", "camera capture without an image filename")
    if not _is_image_name(filename):
        raise BadInput("unsupported image format", "%s is not a PNG or JPEG file" % _short(filename))


def is_label_id(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_LABEL_ID


def _number(value):
    """A JSON number as a float; strings, booleans and numbers past float range are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("not a number: %r" % (value,))
    return float(value)     # OverflowError for an integer of hundreds of digits


def _legacy_xywh(value):
    return value["x"], value["y"], value["width"], value["height"]


def _solo_xywh(value):
    (x, y), (width, height) = value["origin"], value["dimension"]
    return x, y, width, height


def _box(value, label_key, name_key, xywh):
    try:
        label_id = value[label_key]
        label_name = value.get(name_key) or ""
        numbers = [_number(n) for n in xywh(value)]
    except (KeyError, TypeError, ValueError, OverflowError):
        raise BadInput("malformed box", _short(value))
    if not is_label_id(label_id):
        raise BadInput("malformed box", "label id is not an integer in [0, %d]: %s"
                       % (MAX_LABEL_ID, _short(value)))
    if not isinstance(label_name, str):
        raise BadInput("malformed box", "label name is not a string: %s" % _short(value))
    if not all(math.isfinite(n) for n in numbers) or numbers[2] < 0 or numbers[3] < 0:
        raise BadInput("malformed box", "negative or non-finite size: %s" % _short(value))
    return Box(label_id, label_name, *numbers)


def _short(value, limit=120):
    try:
        text = repr(value)
    except RecursionError:
        return "<a value nested too deeply to show>"
    return text if len(text) <= limit else text[:limit] + "..."
