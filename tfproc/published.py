"""UnityGroceries-Real as published: its label names and its split files.

Beside ``annotations.json`` the published dataset (``groceries/v3/``) holds
``annotation_definitions.json`` (label names in ``annotation_definitions[0].spec``) and one
``groceries_real_<split>.txt`` per split: one line of space-separated indices into the
``annotations.json`` list (datasetinsights' ``GroceriesReal`` reads exactly these files). A photo
may be in several splits (``train_small`` is a part of ``train``, ``test_low_contrast`` of ``test``),
so each photo carries the list of its splits.
"""
import json
import re

DEFINITIONS = "annotation_definitions.json"
SPLIT_FILE = re.compile(r"^groceries_real_([a-z][a-z0-9_]{0,63})\.txt$")
FILE_PATTERN = "groceries_real_<split>.txt"
SPLIT_BY = "published split files"      # summary.json's split_by for a conversion by these files

BAD_INDEX = "bad split index"
DUPLICATE = "duplicate split index"
LEAK = "photo in a train and a test split"


class BadDefinitions(ValueError):
    """annotation_definitions.json does not name labels as the published dataset does."""


def split_name(file_name):
    """The split a file name holds (``groceries_real_test_low_ratio.txt`` -> ``test_low_ratio``), or None."""
    match = SPLIT_FILE.match(file_name)
    return match.group(1) if match else None


def file_name(split):
    return "groceries_real_%s.txt" % split


def label_names(text):
    """``{label_id: label_name}`` of an annotation_definitions.json text."""
    try:
        spec = json.loads(text)["annotation_definitions"][0]["spec"]
        names = {item["label_id"]: item["label_name"] for item in spec}
    except (ValueError, KeyError, IndexError, TypeError):
        raise BadDefinitions("expected {\"annotation_definitions\": [{\"spec\": [{\"label_id\": 1, "
                             "\"label_name\": ...}]}]}")
    if not names or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 and isinstance(n, str)
                            for i, n in names.items()):
        raise BadDefinitions("its spec needs label_id (a whole number) and label_name (a string) for each label")
    return names


def label_map_differences(definitions, label_map):
    """Lines naming each id whose name differs between the dataset's definitions and a label map."""
    lines = []
    for label_id, name in sorted(definitions.items()):
        theirs = label_map.get(label_id)
        if theirs is None:
            lines.append("label id %d (%s) is not in the label map" % (label_id, name))
        elif theirs != name:
            lines.append("label id %d is %r in %s and %r in the label map" % (label_id, name, DEFINITIONS, theirs))
    return lines


def ordered(names):
    """Split names as a person reads them: train and its parts, val, test and its subsets, the rest."""
    def key(name):
        family = next((i for i, f in enumerate(("train", "val", "test")) if name == f or name.startswith(f + "_")), 3)
        return family, name.count("_"), name
    return sorted(names, key=key)


def default_eval_split(names):
    """The split a training evaluates on by default: eval, else val (the published splits), else None."""
    return next((name for name in ("eval", "val") if name in names), None)


def split_by_files(summary):
    """Whether a summary.json (parsed) is of a conversion by the published split files."""
    return isinstance(summary, dict) and summary.get("split_by") == SPLIT_BY


def is_training(split):
    return split.startswith("train")


def is_held_out(split):
    return split == "val" or split.startswith("test")


def assign(photos, texts, where):
    """Each photo's splits, from the split files' ``texts`` ({split: file text}).

    ``photos`` is the number of entries of annotations.json; ``where(split)`` names a split file in
    messages. Returns ``({index: sorted split names}, [(item, reason, detail)])``: an index that is
    not a number or out of range, a duplicate, or a photo in both a training split (``train*``) and
    a held-out one (``val``, ``test*``) is named; the last is left out of the training splits, so
    that the test splits stay as published.
    """
    problems, members = [], {}
    for split in sorted(texts):
        seen = set()
        for position, token in enumerate(texts[split].split()):
            item = "%s#%d" % (where(split), position + 1)
            try:
                index = int(token)
            except ValueError:
                problems.append((item, BAD_INDEX, "%r is not a number" % token[:40]))
                continue
            if not 0 <= index < photos:
                problems.append((item, BAD_INDEX, "index %d is out of range: annotations.json lists %d photos "
                                                  "(indices 0 to %d)" % (index, photos, photos - 1)))
                continue
            if index in seen:
                problems.append((item, DUPLICATE, "index %d is listed twice; it is kept once" % index))
                continue
            seen.add(index)
            members.setdefault(index, set()).add(split)
    for index in sorted(members):
        splits = members[index]
        training = sorted(s for s in splits if is_training(s))
        held_out = sorted(s for s in splits if is_held_out(s))
        if training and held_out:
            problems.append(("%s index %d" % (where(training[0]), index), LEAK,
                             "also in %s; left out of %s" % (where(held_out[0]), ", ".join(training))))
            splits.difference_update(training)
    return {index: tuple(sorted(splits)) for index, splits in members.items() if splits}, problems
