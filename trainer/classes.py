"""Which classes a model knows, by name, and which of a dataset's classes are new to it. A model
scored on data that gained a class (seed 004's retraining after a new product) is scored on the
classes it knows; a class id that names another class is refused."""
import os

import tensorflow as tf

from tfproc import labels

LABEL_MAP = "label_map.pbtxt"       # in the model dir: the classes it was trained on


class ClassMismatch(Exception):
    """The dataset's class ids mean other classes than the model's; the message says which."""


def save(model_dir, names):
    """MODEL_DIR/label_map.pbtxt, once: a resumed training keeps the first one."""
    from trainer import engine
    path = os.path.join(model_dir, LABEL_MAP)
    if not tf.io.gfile.exists(path):
        engine.write_text(path, labels.format_label_map(names))


def model_names(model_dir, params):
    """``{id: name}`` of the classes the model was trained on: its label_map.pbtxt, else its
    training data's (models trained before it was kept); None when neither can be read."""
    train_pattern = str(params.task.train_data.input_path or "")
    candidates = [os.path.join(model_dir, LABEL_MAP)]
    if train_pattern:
        candidates.append(os.path.join(os.path.dirname(os.path.dirname(train_pattern)), LABEL_MAP))
    for path in candidates:
        try:
            with tf.io.gfile.GFile(path) as f:
                return labels.parse_label_map(f.read())
        except (tf.errors.OpError, labels.BadLabelMap, ValueError):
            continue
    return None


def new_to_model(known, head_classes, data_names, dataset):
    """``{id: name}`` of the dataset's classes the model was not trained on (scored for a model that
    knows them only). ``known`` is the model's ``{id: name}`` (or None), ``head_classes`` its
    num_classes without the background. Raises ClassMismatch when an id names another class in the
    model, or when the model's names are unknown and the data holds ids beyond its head."""
    if known is None:
        beyond = {i: n for i, n in data_names.items() if i > head_classes}
        if beyond:
            raise ClassMismatch(
                "%s has class ids up to %d; the model knows %d classes and not their names. Convert real photos "
                "with --label-map of the synthetic conversion" % (dataset, max(data_names), head_classes))
        return {}
    renamed = ["%d is %s in the model but %s in the data" % (i, known[i], n)
               for i, n in sorted(data_names.items()) if i in known and known[i] != n]
    if renamed:
        raise ClassMismatch("the class ids of %s mean other classes than the model's (class %s): convert it with "
                            "--label-map of the model's training data" % (dataset, "; class ".join(renamed)))
    return {i: n for i, n in data_names.items() if i not in known or i > head_classes}
