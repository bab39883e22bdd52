"""Class ids and names: merging what the datasets say, and the label map the training side reads.

The label map is the TF Object Detection API's ``StringIntLabelMap`` text proto. It is written and
read with protobuf's own text format (through a descriptor of that message built here, so TF is not
needed), which escapes and unescapes any name correctly; this module is the one reader of the project.
"""
import dataclasses
import functools

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format


class BadLabelMap(ValueError):
    """A label map text that is not a usable StringIntLabelMap."""


@functools.lru_cache(maxsize=None)
def _label_map_class():
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="tfproc/string_int_label_map.proto", package="object_detection.protos", syntax="proto2")
    item = proto.message_type.add(name="StringIntLabelMapItem")
    item.field.add(name="name", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    item.field.add(name="id", number=2, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL)
    item.field.add(name="display_name", number=3, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    label_map = proto.message_type.add(name="StringIntLabelMap")
    label_map.field.add(name="item", number=1, type=field.TYPE_MESSAGE, label=field.LABEL_REPEATED,
                        type_name=".object_detection.protos.StringIntLabelMapItem")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("object_detection.protos.StringIntLabelMap"))


def format_label_map(names):
    """``{id: name}`` as StringIntLabelMap text, names escaped as text format requires."""
    message = _label_map_class()()
    for class_id in sorted(names):
        message.item.add(id=class_id, name=names[class_id])
    return text_format.MessageToString(message, as_utf8=True)


def parse_label_map(text):
    """``{id: name}`` of a StringIntLabelMap text (``display_name`` when there is no ``name``).

    Fields of the full proto that this tool does not use (keypoints, frequency, ...) are allowed.
    Raises BadLabelMap when the text does not parse or names no class.
    """
    message = _label_map_class()()
    try:
        text_format.Parse(text, message, allow_unknown_field=True)
    except text_format.ParseError as error:
        raise BadLabelMap("not a StringIntLabelMap text proto: %s" % error)
    names = {}
    for item in message.item:
        if not item.HasField("id"):
            raise BadLabelMap("an item has no id: %s" % text_format.MessageToString(item, as_one_line=True))
        names[item.id] = item.name if item.HasField("name") else item.display_name
    if not names:
        raise BadLabelMap("no item { id: N name: '...' } entries")
    return names


@dataclasses.dataclass(frozen=True)
class LabelMap:
    names: dict          # {class id as written to the records: name}
    shift: int           # added to every dataset label id (1 when the datasets use id 0)
    conflicts: tuple     # (dataset id, [names]) where datasets disagree on a name

    @property
    def num_classes(self):
        """The value to pass to training: every class id lies in [1, num_classes]."""
        return max(self.names, default=0)

    def to_pbtxt(self):
        """The TF Object Detection API ``StringIntLabelMap`` text proto."""
        return format_label_map(self.names)


def dataset_labels(definition_labels, frames):
    """``{label_id: {names}}`` of one dataset: its definition's spec and the names boxes give."""
    labels = {label_id: {name} for label_id, name in definition_labels.items()}
    for frame in frames:
        for box in frame.boxes:
            names = labels.setdefault(box.label_id, set())
            if box.label_name and not names:
                names.add(box.label_name)
    return labels


def merge(label_sets):
    """Merge per-dataset ``{label_id: {names}}`` into one; associative, for a Beam combiner."""
    merged = {}
    for labels in label_sets:
        for label_id, names in labels.items():
            merged.setdefault(label_id, set()).update(names)
    return merged


def build_label_map(labels):
    """The label map of merged ``{label_id: {names}}``; ids move up by one if any dataset used 0."""
    shift = 1 if 0 in labels else 0
    names, conflicts = {}, []
    for label_id in sorted(labels):
        options = sorted(labels[label_id])
        names[label_id + shift] = options[0] if options else "class_%d" % label_id
        if len(options) > 1:
            conflicts.append((label_id, options))
    return LabelMap(names, shift, tuple(conflicts))
