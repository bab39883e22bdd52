"""How a Vertex AI training job gets and keeps its machines: Spot or flex-start, restarts, boot
disks, a reservation, a persistent resource and a customer-managed key, in the aiplatform v1
``CustomJob`` fields that hold them.

    capacity = Capacity(spot=True, boot_disk_size_gb=200)
    notes = check(capacity, region="us-central1")     # UsageError for what Vertex refuses
    apply(body, capacity, replicas=3)                                # scheduling, diskSpec, ... set in place

Each rule that refuses a combination quotes where Vertex says so.
"""
import dataclasses
import json
import re

from launcher.errors import UsageError
from launcher.jobs import durations

BOOT_DISK_TYPES = ("pd-ssd", "pd-standard", "hyperdisk-balanced")
RESERVATION_KEY = "compute.googleapis.com/reservation-name"
_RESERVATION = re.compile(r"^projects/[^/\s]+/zones/[a-z]+-[a-z]+[0-9]+-[a-z]/reservations/[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_PERSISTENT_RESOURCE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?\Z")
_KMS_KEY = re.compile(r"^projects/[^/\s]+/locations/([^/\s]+)/keyRings/[^/\s]+/cryptoKeys/[^/\s]+\Z")

FLEX_WITH_RESERVATION = (
    "--flex-start cannot be used with --reservation: Vertex AI's training documentation says FLEX_START "
    "(Dynamic Workload Scheduler) and persistent resources cannot be used together with a Compute Engine "
    "reservation")
PERSISTENT_WITH_RESERVATION = (
    "--persistent-resource cannot be used with --reservation: Vertex AI's training documentation says "
    "FLEX_START and persistent resources cannot be used together with a Compute Engine reservation; the "
    "persistent resource's own pools decide where the job runs")
SPOT_WITH_RESERVATION = (
    "--spot cannot be used with --reservation: Compute Engine's Spot VMs cannot consume reservations, so the job "
    "would never get the reserved machines; drop --spot to use the reservation, or --reservation to run on Spot")
BOOT_DISK_GB = (100, 64000)                 # Vertex AI's DiskSpec.bootDiskSizeGb range
# Dynamic Workload Scheduler (FLEX_START): "requests L4, A100, H100, H200, or B200 GPUs", "a maximum timeout of
# 7 days or less", "the same machine configuration for all worker pools" (Vertex AI: schedule-jobs-dws).
FLEX_START_GPUS = ("NVIDIA_L4", "NVIDIA_TESLA_A100", "NVIDIA_A100_80GB", "NVIDIA_H100_80GB", "NVIDIA_H100_MEGA_80GB",
                   "NVIDIA_H200_141GB", "NVIDIA_B200")
FLEX_START_MAX_TIMEOUT = 7 * 24 * 3600


@dataclasses.dataclass(frozen=True)
class Capacity:
    spot: bool = False
    flex_start: bool = False
    max_wait: str = ""                          # with flex_start: "2h"; "0" waits without end (Vertex: 24 h)
    restart_on_worker_restart: bool = None      # None: on when the job has more than one machine
    disable_retries: bool = False
    boot_disk_size_gb: int = None
    boot_disk_type: str = ""
    reservation: str = ""                       # projects/P/zones/Z/reservations/R
    persistent_resource: str = ""               # the id of a persistent resource in the job's project and region
    kms_key: str = ""                           # projects/P/locations/L/keyRings/K/cryptoKeys/C

    @property
    def strategy(self):
        """Vertex's ``scheduling.strategy``, or None for its default (on-demand)."""
        return "SPOT" if self.spot else "FLEX_START" if self.flex_start else None

    def describe(self):
        """How the machines are bought, in a few words (for the price line)."""
        return "Spot" if self.spot else "flex-start" if self.flex_start else "on-demand"

    def to_json(self):
        """The pipeline parameter that carries these choices to its training steps."""
        return json.dumps({k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "", False)},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text):
        try:
            values = json.loads(text or "{}")
            return cls(**values)
        except (ValueError, TypeError) as error:
            raise UsageError("not a capacity description (%s): %r" % (error, text))


def machines(pools):
    return sum(int((pool or {}).get("replicaCount") or 1) for pool in pools if pool)


def check(capacity, region):
    """Refuse what Vertex AI would refuse, before anything is sent; returns notes on what Vertex
    alone can decide."""
    notes = []
    if capacity.spot and capacity.flex_start:
        raise UsageError("--spot and --flex-start are two scheduling strategies; pick one")
    if capacity.max_wait and not capacity.flex_start:
        raise UsageError("--max-wait is how long a --flex-start job may wait for its machines; pass --flex-start too")
    if capacity.max_wait and capacity.max_wait.strip() != "0":
        durations.seconds(capacity.max_wait, "--max-wait")
    if capacity.disable_retries and capacity.restart_on_worker_restart:
        raise UsageError("--disable-retries turns off --restart-on-worker-restart (Vertex: disableRetries \"overrides "
                         "restart_job_on_worker_restart to false\"); pass one of them")
    if capacity.boot_disk_size_gb is not None:
        check_boot_disk(capacity.boot_disk_size_gb, "--boot-disk-size-gb")
    if capacity.boot_disk_type and capacity.boot_disk_type not in BOOT_DISK_TYPES:
        raise UsageError("--boot-disk-type must be one of %s (aiplatform v1 DiskSpec), got %s"
                         % (", ".join(BOOT_DISK_TYPES), capacity.boot_disk_type))
    if capacity.reservation:
        if not _RESERVATION.match(capacity.reservation):
            raise UsageError("--reservation takes the reservation's full name, projects/PROJECT/zones/ZONE/"
                             "reservations/NAME, got %r" % capacity.reservation)
        zone = capacity.reservation.split("/")[3]
        if zone.rsplit("-", 1)[0] != region:
            raise UsageError("--reservation is in zone %s, outside the job's region %s; pass --region %s"
                             % (zone, region, zone.rsplit("-", 1)[0]))
        if capacity.flex_start:
            raise UsageError(FLEX_WITH_RESERVATION)
        if capacity.persistent_resource:
            raise UsageError(PERSISTENT_WITH_RESERVATION)
        if capacity.spot:
            raise UsageError(SPOT_WITH_RESERVATION)
    if capacity.persistent_resource and not _PERSISTENT_RESOURCE.match(capacity.persistent_resource):
        raise UsageError("--persistent-resource takes the persistent resource's id (at most 63 of a-z, 0-9 and -, "
                         "starting with a letter), not its full name; got %r" % capacity.persistent_resource)
    if capacity.persistent_resource:
        notes.append("--persistent-resource %s: its pools must have the job's machine and disk types, and the job's "
                     "network and key must be the resource's; Vertex checks that when the job is created"
                     % capacity.persistent_resource)
    if capacity.kms_key:
        match = _KMS_KEY.match(capacity.kms_key)
        if not match:
            raise UsageError("--kms-key takes projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY, "
                             "got %r" % capacity.kms_key)
        if match.group(1) != region:
            raise UsageError("--kms-key is in %s, but Vertex says \"The key needs to be in the same region as "
                             "where the compute resource is created\" (%s); pass a key of %s" % (match.group(1), region, region))
    return notes


def check_boot_disk(size_gb, where):
    low, high = BOOT_DISK_GB
    if not low <= size_gb <= high:
        raise UsageError("%s must be %d-%d GB (Vertex AI's boot disk sizes), got %d" % (where, low, high, size_gb))


def check_machines(capacity, pools, timeout_seconds=None):
    """The rules that need the job's machines and timeout: those of --flex-start (Dynamic Workload
    Scheduler), quoted from Vertex AI's documentation."""
    if not capacity.flex_start:
        return
    specs = [pool["machineSpec"] for pool in pools if pool]
    kinds = sorted({str(spec.get("acceleratorType") or "no GPU") for spec in specs})
    if any(kind not in FLEX_START_GPUS for kind in kinds):
        raise UsageError("--flex-start needs L4, A100, H100, H200 or B200 GPUs (Vertex AI: Dynamic Workload Scheduler "
                         "needs a job that \"requests L4, A100, H100, H200, or B200 GPUs\"), got %s; pass "
                         "--accelerator gpu or a100" % ", ".join(kinds))
    if (timeout_seconds or FLEX_START_MAX_TIMEOUT) > FLEX_START_MAX_TIMEOUT:
        raise UsageError("--flex-start needs --timeout of 7 days or less (Vertex AI: \"a maximum timeout of 7 days "
                         "or less\"), got %d s" % timeout_seconds)
    configurations = {tuple(str(spec.get(key) or "") for key in ("machineType", "acceleratorType", "acceleratorCount"))
                      for spec in specs}
    if len(configurations) > 1:
        raise UsageError("--flex-start needs one machine for every worker pool (Vertex AI: \"the same machine "
                         "configuration for all worker pools\"), got %s"
                         % "; ".join(" with ".join(part for part in c[:2] if part) for c in sorted(configurations)))


def restarts(capacity, replicas):
    """Whether the whole job restarts when one worker does: asked, or the default for a
    multi-worker job (one worker restarted alone cannot rejoin MultiWorkerMirroredStrategy)."""
    if capacity.restart_on_worker_restart is not None:
        return capacity.restart_on_worker_restart
    return replicas > 1 and not capacity.disable_retries


def apply(body, capacity, replicas):
    """Write the choices into a ``customJobs.create`` body, where aiplatform v1 wants them."""
    spec = body["jobSpec"]
    scheduling = dict(spec.get("scheduling") or {})
    if capacity.strategy:
        scheduling["strategy"] = capacity.strategy
    if capacity.flex_start and capacity.max_wait:
        wait = capacity.max_wait.strip()
        scheduling["maxWaitDuration"] = "0s" if wait == "0" else "%ds" % durations.seconds(wait, "--max-wait")
    if restarts(capacity, replicas):
        scheduling["restartJobOnWorkerRestart"] = True
    if capacity.disable_retries:
        scheduling["disableRetries"] = True
    if scheduling:
        spec["scheduling"] = scheduling
    for pool in spec["workerPoolSpecs"]:
        if not pool:
            continue
        if capacity.boot_disk_size_gb is not None or capacity.boot_disk_type:
            disk = dict(pool.get("diskSpec") or {})
            if capacity.boot_disk_type:
                disk["bootDiskType"] = capacity.boot_disk_type
            if capacity.boot_disk_size_gb is not None:
                disk["bootDiskSizeGb"] = capacity.boot_disk_size_gb
            pool["diskSpec"] = disk
        if capacity.reservation:
            pool["machineSpec"] = dict(pool["machineSpec"], reservationAffinity={
                "reservationAffinityType": "SPECIFIC_RESERVATION", "key": RESERVATION_KEY,
                "values": [capacity.reservation]})
    if capacity.persistent_resource:
        spec["persistentResourceId"] = capacity.persistent_resource
    if capacity.kms_key:
        body["encryptionSpec"] = {"kmsKeyName": capacity.kms_key}
    return body
