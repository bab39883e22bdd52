"""Which distribution strategy fits the machine, and whether the accelerators a job paid for are visible.

Plain functions of what TensorFlow reports, so that they are tested without the devices.
"""
import json
import os

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker_mirrored", "tpu")


class AcceleratorMissing(RuntimeError):
    """The machine was promised accelerators that TensorFlow does not see."""


def cluster(tf_config=None):
    """``(number of machines, this machine's task type, index)`` from TF_CONFIG (Vertex AI sets it for
    jobs with more than one replica); ``(1, "chief", 0)`` without it."""
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    try:
        doc = json.loads(text) if text else {}
    except ValueError:
        doc = {}
    machines = sum(len(v) for v in (doc.get("cluster") or {}).values() if isinstance(v, list))
    task = doc.get("task") or {}
    return max(machines, 1), task.get("type") or "chief", int(task.get("index") or 0)


def is_chief(tf_config=None):
    """Whether this machine writes the run's files (metrics, params, the export)."""
    machines, task_type, index = cluster(tf_config)
    if machines == 1:
        return True
    doc = json.loads(os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config)
    has_chief = bool((doc.get("cluster") or {}).get("chief"))
    return task_type == "chief" or (not has_chief and task_type == "worker" and index == 0)


def choose(requested, gpus, tpus, machines):
    """The strategy for ``auto``: several machines, a TPU, several GPUs, or one device."""
    if requested != "auto":
        return requested
    if machines > 1:
        return "multi_worker_mirrored"
    if tpus:
        return "tpu"
    if gpus > 1:
        return "mirrored"
    return "one_device"


def parse_promise(text):
    """``"gpu:2"`` -> ``("gpu", 2)``; ``None`` or ``""`` -> ``None``."""
    if not text:
        return None
    kind, _, count = text.partition(":")
    kind = kind.strip().lower()
    if kind not in ("gpu", "tpu") or not count.strip().isdigit() or int(count) < 1:
        raise ValueError("--expect-accelerator takes gpu:N or tpu:N, got %r" % text)
    return kind, int(count)


def check_promise(promise, gpus, tpus, seen, machine_type=None):
    """Raise AcceleratorMissing when fewer accelerators are visible than ``promise`` says."""
    if promise is None:
        return
    kind, count = promise
    visible = gpus if kind == "gpu" else tpus
    if visible >= count:
        return
    cause = None
    if kind == "gpu":
        from trainer import container
        cause = container.driver_problem()
    raise AcceleratorMissing(
        "machine %s was promised %d %s(s) but TensorFlow sees %d (devices: %s); stopping instead of "
        "training on the CPU. %s" % (
            machine_type or "(type not given)", count, kind.upper(), visible, ", ".join(seen) or "none",
            "Likely cause: %s" % cause if cause else "Check that the image's TensorFlow matches the machine "
                                                     "(README: the image)"))


def visible():
    """``(gpus, tpus, device names)`` as TensorFlow sees them on this machine."""
    import tensorflow as tf
    devices = tf.config.list_physical_devices()
    names = [d.name.replace("/physical_device:", "") for d in devices]
    return (sum(d.device_type == "GPU" for d in devices), sum(d.device_type == "TPU" for d in devices), names)
