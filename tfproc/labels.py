"""Class ids and names: merging what the datasets say, and the label map the training side reads."""
import dataclasses


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
        items = []
        for class_id in sorted(self.names):
            name = self.names[class_id].replace("\\", "\\\\").replace("'", "\\'")
            items.append("item {\n  id: %d\n  name: '%s'\n}\n" % (class_id, name))
        return "".join(items)


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
