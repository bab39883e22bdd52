"""The body of a Vertex AI custom job (aiplatform v1 ``CustomJob``): the machines of the
``--accelerator`` presets, the strategy that fits them, the trainer's arguments with the
accelerators the machine promises (which the trainer checks at start), and the same with gcloud.
"""
import json
import shlex

import yaml

from launcher.errors import UsageError
from launcher.jobs import capacity as capacity_lib

LABEL = "synthdet_job_id"
TRAINER_COMMAND = ["python", "-m", "trainer"]
INT32_MAX, INT64_MAX = 2 ** 31 - 1, 2 ** 63 - 1

# --accelerator presets: the machine type for 1, 2, 4 or 8 GPUs of a kind.
GPU_MACHINES = {
    "gpu": ("NVIDIA_L4", {1: "g2-standard-8", 2: "g2-standard-24", 4: "g2-standard-48", 8: "g2-standard-96"}),
    "a100": ("NVIDIA_TESLA_A100", {1: "a2-highgpu-1g", 2: "a2-highgpu-2g", 4: "a2-highgpu-4g", 8: "a2-highgpu-8g"}),
}
CPU_MACHINE = "n1-standard-8"       # --accelerator cpu: no accelerator (on --backend local: this machine's CPU)
ACCELERATORS = ("gpu", "a100", "cpu", "tpu")
TPU_REFUSAL = (
    "--accelerator tpu is refused: the project's image carries TensorFlow for CUDA, not TensorFlow's TPU "
    "runtime (tensorflow-tpu with libtpu cannot be installed beside tf-models-official, which requires "
    "tensorflow), so a TPU (v5e: ct5lp-hightpu-4t, TPU_V5_LITEPOD) would sit idle. Train on --accelerator gpu "
    "or a100, or pass --worker-pool-spec-file with a TPU machine and the containerSpec of a TPU image of your own")


def label_value(job_id):
    return job_id.lower()[:63]


def machine_spec(accelerator, gpus=1):
    if accelerator == "tpu":
        raise UsageError(TPU_REFUSAL)
    if accelerator == "cpu":
        if gpus != 1:
            raise UsageError("--gpus goes with --accelerator gpu or a100, not cpu")
        return {"machineType": CPU_MACHINE}
    if accelerator not in GPU_MACHINES:
        raise UsageError("--accelerator must be one of %s, got %s" % (", ".join(ACCELERATORS), accelerator))
    kind, machines = GPU_MACHINES[accelerator]
    if gpus not in machines:
        raise UsageError("--gpus must be one of %s, got %s" % (", ".join(map(str, sorted(machines))), gpus))
    return {"machineType": machines[gpus], "acceleratorType": kind, "acceleratorCount": gpus}


def worker_pools(accelerator, gpus=1, replicas=1):
    """One chief and, with ``replicas`` > 1, a pool of ``replicas - 1`` workers on the same machine."""
    if replicas < 1:
        raise UsageError("--replicas must be at least 1, got %d" % replicas)
    spec = machine_spec(accelerator, gpus)
    pools = [{"machineSpec": spec, "replicaCount": "1"}]
    if replicas > 1:
        pools.append({"machineSpec": dict(spec), "replicaCount": str(replicas - 1)})
    return pools


def worker_pools_from_file(path):
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)     # JSON is YAML
    except (OSError, yaml.YAMLError) as error:
        raise UsageError("cannot read --worker-pool-spec-file %s: %s" % (path, str(error).splitlines()[0]))
    pools = doc.get("workerPoolSpecs") if isinstance(doc, dict) else doc
    if not isinstance(pools, list) or not pools or not all(isinstance(p, dict) and "machineSpec" in p for p in pools):
        raise UsageError("%s must hold a list of worker pool specs, each with a machineSpec "
                         "(or {\"workerPoolSpecs\": [...]})" % path)
    for number, pool in enumerate(pools):
        where = "%s: workerPoolSpecs[%d]" % (path, number)
        _check_count(pool["machineSpec"].get("acceleratorCount"), where + ".machineSpec.acceleratorCount", INT32_MAX)
        _check_count(pool.get("replicaCount"), where + ".replicaCount", INT64_MAX)
        size = (pool.get("diskSpec") or {}).get("bootDiskSizeGb")
        if size is not None:
            capacity_lib.check_boot_disk(_check_count(size, where + ".diskSpec.bootDiskSizeGb", INT32_MAX),
                                         where + ".diskSpec.bootDiskSizeGb")
    return pools


def _check_count(value, where, largest):
    """A count of the API (int32, or int64 sent as a string): a whole number from 1 to ``largest``."""
    if value is None:
        return None
    try:
        number = int(str(value))
    except ValueError:
        number = None
    if number is None or not 1 <= number <= largest or isinstance(value, bool):
        raise UsageError("%s must be a whole number from 1 to %d (the API's %s field), got %r"
                         % (where, largest, "int32" if largest == INT32_MAX else "int64", value))
    return number


def _is_tpu(spec):
    return str(spec.get("acceleratorType", "")).startswith("TPU")


def promise(spec):
    """What the trainer must see on a machine: ``"gpu:N"``, ``"tpu:N"`` or None (CPU)."""
    count = int(spec.get("acceleratorCount") or 0)
    if not spec.get("acceleratorType") or count < 1:
        return None
    return "%s:%d" % ("tpu" if _is_tpu(spec) else "gpu", count)


def strategy(pools):
    """The trainer's strategy for these pools: several machines train multi-worker; otherwise the
    chief's accelerators decide."""
    machines = sum(int(p.get("replicaCount") or 1) for p in pools if p)
    chief = pools[0]["machineSpec"]
    if machines > 1:
        if _is_tpu(chief):
            raise UsageError("more than one TPU machine is not supported; use one TPU pool with one replica")
        return "multi_worker_mirrored"
    if _is_tpu(chief):
        return "tpu"
    return "mirrored" if int(chief.get("acceleratorCount") or 0) > 1 else "one_device"


def trainer_args(dataset, hyperparameters, num_classes=None, backbone="resnet-50", strategy_name="auto",
                 spec=None, overrides=(), init_checkpoint=None, init_from=None, model_size="full", train_split="",
                 eval_split=""):
    """``python -m trainer`` arguments: the same flags as a local ``python -m trainer train``, plus the
    strategy and what the machine promises."""
    args = ["train", "--dataset", dataset]
    for name, value in hyperparameters.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    if num_classes is not None:
        args += ["--num-classes", str(num_classes)]
    args += ["--backbone", backbone, "--strategy", strategy_name]
    if model_size and model_size != "full":
        args += ["--model-size", model_size]
    if train_split:
        args += ["--train-split", train_split]
    if eval_split:
        args += ["--eval-split", eval_split]
    if init_from:
        args += ["--init-from", init_from]
    elif init_checkpoint:
        args += ["--init-checkpoint", init_checkpoint]
    if spec:
        expected = promise(spec)
        if expected:
            args += ["--expect-accelerator", expected]
        args += ["--machine-type", spec.get("machineType", "")]
    for mapping in overrides:
        args += ["--params-override", json.dumps(mapping, sort_keys=True)]
    return args


def job_body(job_id, job_dir, pools, image, trainer_args_for, labels=None, service_account="", network="",
             timeout_seconds=None, tensorboard="", enable_web_access=False, capacity=None):
    """The ``customJobs.create`` body. Each pool runs the image with ``trainer_args_for(machineSpec)``;
    a pool of your own with a containerSpec that has args runs as given."""
    filled = []
    for pool in pools:
        pool = dict(pool)
        container = dict(pool.get("containerSpec") or {})
        if _is_tpu(pool["machineSpec"]) and not container.get("imageUri"):
            raise UsageError(TPU_REFUSAL)
        if not container.get("args"):
            container.setdefault("imageUri", image)
            container.setdefault("command", list(TRAINER_COMMAND))
            container["args"] = trainer_args_for(pool["machineSpec"])
        if not container.get("imageUri"):
            raise UsageError("pass --image: the project's image, built by cloudbuild.yaml (README: the image)")
        pool["containerSpec"] = container
        pool.pop("pythonPackageSpec", None)
        filled.append(pool)
    spec = {"workerPoolSpecs": filled, "baseOutputDirectory": {"outputUriPrefix": job_dir}}
    if service_account:
        spec["serviceAccount"] = service_account
    if network:
        spec["network"] = network
    if timeout_seconds:
        spec["scheduling"] = {"timeout": "%ds" % timeout_seconds}
    if tensorboard:
        spec["tensorboard"] = tensorboard
    if enable_web_access:
        spec["enableWebAccess"] = True
    all_labels = dict(labels or {})
    all_labels[LABEL] = label_value(job_id)
    body = {"displayName": job_id, "labels": all_labels, "jobSpec": spec}
    return capacity_lib.apply(body, capacity or capacity_lib.Capacity(), capacity_lib.machines(filled))


def with_job_id(body, job_id):
    """The body under another job id (a later attempt): its display name and our label."""
    body = dict(body, displayName=job_id)
    body["labels"] = dict(body["labels"], **{LABEL: label_value(job_id)})
    return body


def gcloud_command(body, region, config_path):
    """The equivalent ``gcloud ai custom-jobs create`` command (its --config holds the jobSpec)."""
    labels = ",".join("%s=%s" % item for item in sorted(body["labels"].items()))
    flags = ["--region=%s" % region, "--display-name=%s" % body["displayName"], "--labels=%s" % labels,
             "--config=%s" % config_path]
    if body.get("encryptionSpec"):
        flags.append("--kms-key=%s" % body["encryptionSpec"]["kmsKeyName"])
    return " \\\n    ".join(["gcloud ai custom-jobs create"] + [shlex.quote(f) for f in flags])


def config_yaml(body):
    return yaml.safe_dump(body["jobSpec"], sort_keys=False)


def contains(theirs, ours):
    """Whether every field we set is in ``theirs`` with the same value (the server adds defaults)."""
    if isinstance(ours, dict):
        return isinstance(theirs, dict) and all(contains(theirs.get(k), v) for k, v in ours.items())
    if isinstance(ours, list):
        return isinstance(theirs, list) and len(theirs) == len(ours) and all(map(contains, theirs, ours))
    return str(theirs) == str(ours)
