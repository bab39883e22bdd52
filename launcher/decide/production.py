"""The production folder: write-once model versions and one pointer that names the current one.

    PRODUCTION/production.json          {"current": VERSION, "previous": VERSION or null, "history": [...]}
    PRODUCTION/models/<run>/            a promoted model: its checkpoint, params.yaml, metrics.json,
                                        and COMPLETE, written last
    VERSION = {"name", "model", "source", "checkpoint", "metrics", "compared", "promoted_at"}

A promotion copies the candidate into ``models/<run>/`` (never changed once COMPLETE is there), then
replaces the pointer in one write. A crash at any point leaves the old pointer or the new one, and
both name complete models; promoting the same candidate again changes nothing; ``rollback`` points
back to the previous model. A claim on the folder (the conversion's lock: an flock locally, a
generation-matched object on gs://) keeps two promotions apart.
"""
import json
import os
import posixpath
import re
import time

from tfproc import fsutil
from tfproc import output as output_lib

POINTER = "production.json"
MODELS = "models"
COMPLETE = "COMPLETE"


class PromotionError(RuntimeError):
    """A promotion or rollback that cannot be done; the message says why."""


def _join(*parts):
    return posixpath.join(*parts) if fsutil.is_remote(parts[0]) else os.path.join(*parts)


def version_name(run):
    return re.sub(r"[^A-Za-z0-9._-]+", "-", run).strip("-")[:120] or "run"


def default_version_name(candidate_dir):
    """A pipeline run's RUN/candidate (or RUN/finetuned) is version RUN; any other model dir is named
    after its own folder."""
    parts = normal_path(candidate_dir).replace("\\", "/").split("/")
    if len(parts) > 1 and parts[-1] in ("candidate", "finetuned"):
        return version_name(parts[-2])
    return version_name(parts[-1])


def read_pointer(production_dir):
    """The pointer, or None before the first promotion. A pointer of the layout before versions
    (PRODUCTION/model and a flat production.json) is read as its current model."""
    path = _join(production_dir, POINTER)
    if not fsutil.is_file(path):
        return None
    try:
        pointer = json.loads(fsutil.read_bytes(path))
    except ValueError as error:
        raise PromotionError("%s is not valid JSON (%s); restore it from its history" % (path, error))
    if isinstance(pointer, dict) and "current" not in pointer and "source" in pointer:        # the earlier layout
        pointer = {"current": dict(pointer, name="model", model=_join(production_dir, "model")),
                   "previous": None, "history": []}
    if not _is_pointer(pointer):
        raise PromotionError('%s is not a production pointer ({"current": {"model": ...}, "previous": ..., '
                             '"history": [...]}); restore it, or move it away to start afresh' % path)
    return pointer


def _is_version(value):
    return isinstance(value, dict) and isinstance(value.get("model"), str) and isinstance(value.get("name", ""), str)


def _is_pointer(value):
    return (isinstance(value, dict) and (value.get("current") is None or _is_version(value.get("current")))
            and (value.get("previous") is None or _is_version(value.get("previous")))
            and isinstance(value.get("history", []), list) and all(_is_version(v) for v in value.get("history", [])))


def check_folder(production_dir, must_exist=False):
    """Refuse a production folder that is a file, lies below a file, or (``must_exist``: a rollback)
    holds no pointer."""
    if fsutil.is_remote(production_dir):
        if must_exist and not fsutil.is_file(_join(production_dir, POINTER)):
            raise PromotionError("%s holds no %s: nothing to roll back" % (production_dir, POINTER))
        return
    path = os.path.abspath(production_dir)
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if os.path.exists(probe) and not os.path.isdir(probe):
        raise PromotionError("--production %s: %s is a file, not a folder" % (production_dir, probe))
    if must_exist and not os.path.isfile(os.path.join(path, POINTER)):
        raise PromotionError("%s holds no %s: nothing to roll back (is the path right?)" % (production_dir, POINTER))


def normal_path(path):
    path = str(path).rstrip("/")
    return path if fsutil.is_remote(path) else os.path.abspath(path)


def current_model(production_dir):
    """The folder of the production model (one holding params.yaml and a checkpoint), or None."""
    pointer = read_pointer(production_dir)
    return (pointer or {}).get("current", {}).get("model") if pointer and pointer.get("current") else None


def promote(candidate_dir, production_dir, run, comparison=None):
    """Make the candidate the production model (as version ``run``); returns ``(pointer, changed)``."""
    candidate_dir = normal_path(candidate_dir)
    check_folder(production_dir)
    if not fsutil.is_file(_join(candidate_dir, "params.yaml")):
        raise PromotionError("%s has no params.yaml: it is not a model dir of python -m trainer train, and could "
                             "not be evaluated or compared later" % candidate_dir)
    claim = output_lib.claim(production_dir, "promote-" + version_name(run), what="promotion")
    try:
        _remove_pointer_debris(production_dir)
        pointer = read_pointer(production_dir)
        current = (pointer or {}).get("current") or {}
        if current.get("source") == candidate_dir:
            return pointer, False                       # promoted already: nothing changes
        version = _copy_version(candidate_dir, production_dir, version_name(run), comparison)
        history = list((pointer or {}).get("history") or [])
        if current:
            history.append(current)
        new = {"current": version, "previous": current or None, "history": history[-50:]}
        fsutil.write_atomically(_join(production_dir, POINTER), fsutil.json_bytes(new))
        return new, True
    finally:
        claim.release()


def rollback(production_dir):
    """Point back to the previous model; the model rolled back from stays in models/."""
    check_folder(production_dir, must_exist=True)
    claim = output_lib.claim(production_dir, "rollback", what="promotion")
    try:
        _remove_pointer_debris(production_dir)
        pointer = read_pointer(production_dir)
        if not pointer or not pointer.get("previous"):
            raise PromotionError("%s has no previous model to roll back to" % production_dir)
        previous = pointer["previous"]
        if not fsutil.is_file(_join(previous["model"], COMPLETE)) and previous.get("name") != "model":
            raise PromotionError("the previous model %s is not complete; it cannot be production" % previous["model"])
        history = list(pointer.get("history") or []) + [pointer["current"]]
        earlier = [v for v in history[:-2] if v.get("model") != previous.get("model")]
        new = {"current": dict(previous, rolled_back_at=_now()), "previous": earlier[-1] if earlier else None,
               "history": history[-50:]}
        fsutil.write_atomically(_join(production_dir, POINTER), fsutil.json_bytes(new))
        return new
    finally:
        claim.release()


def _remove_pointer_debris(production_dir):
    """Temporary copies of the pointer that a killed write left (with the claim held)."""
    debris = [_join(production_dir, rel) for rel in fsutil.list_tree(production_dir)
              if "/" not in rel and rel.startswith(POINTER + ".tmp-")]
    if debris:
        fsutil.delete_many(debris)


def _copy_version(candidate_dir, production_dir, name, comparison):
    """models/<name>/ with the candidate's newest checkpoint, params and metrics; write-once: a
    complete one is reused, an incomplete one (a crash) is written again."""
    import tensorflow as tf
    target = _join(production_dir, MODELS, name)
    latest = tf.train.latest_checkpoint(candidate_dir)
    if not latest:
        raise PromotionError("no checkpoint in %s" % candidate_dir)
    checkpoint = os.path.basename(latest)
    recorded = _join(target, "version.json")
    if fsutil.is_file(_join(target, COMPLETE)) and fsutil.is_file(recorded):
        source = fsutil.read_json(recorded).get("source")
        if source != candidate_dir.rstrip("/"):
            raise PromotionError("version %s is already the model of %s; promote %s under another name (--run)"
                                 % (name, source, candidate_dir))
    if not fsutil.is_file(_join(target, COMPLETE)):
        fsutil.delete_tree(target)          # what a crashed promotion left of this version
        files = [os.path.basename(p) for p in tf.io.gfile.glob(latest + ".*")] + ["params.yaml", "metrics.json",
                                                                                 "label_map.pbtxt"]
        for file_name in files:
            source = _join(candidate_dir, file_name)
            if fsutil.is_file(source):
                fsutil.write_atomically(_join(target, file_name), fsutil.read_bytes(source))
        fsutil.write_atomically(_join(target, "checkpoint"), ('model_checkpoint_path: "%s"\n'
                                                              'all_model_checkpoint_paths: "%s"\n'
                                                              % (checkpoint, checkpoint)).encode())
        fsutil.write_atomically(recorded, fsutil.json_bytes({"source": candidate_dir.rstrip("/"),
                                                             "checkpoint": checkpoint}))
        fsutil.write_atomically(_join(target, COMPLETE), b"")
    return {"name": name, "model": target, "source": candidate_dir.rstrip("/"), "checkpoint": checkpoint,
            "metrics": (comparison or {}).get("candidate_metrics"), "promoted_at": _now(),
            "compared": {k: (comparison or {}).get(k) for k in ("metric", "candidate", "production", "reason")}}


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
