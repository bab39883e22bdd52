"""What a training job may cost: a ceiling from list prices, and an expectation from a measured
step time.

The table holds the machines of ``--accelerator``'s presets in the region the README uses. A
machine or region not in it is said to be unpriced, never guessed.

Where the figures come from (read 2026-12-03):
- Compute Engine list prices per hour, on-demand and Spot, us-central1, of the machine with its
  GPUs: the Cloud Billing Catalog as compiled in github.com/Cyclenerd/google-cloud-pricing-cost-
  calculator, pricing.yml, "generated: Thu Nov 7 2024" (commit 082120d).
- Vertex AI charges more than Compute Engine for the same machine: its pricing page
  (https://cloud.google.com/vertex-ai/pricing, transcribed 2026-10-07 by github.com/api-evangelist/
  google-vertex-ai) lists custom training on n1-standard-4 at $0.21849885 an hour; Compute Engine's
  n1-standard-1 is $0.04749975 in the table above, so n1-standard-4 is $0.189999 there, and Vertex
  charges 1.15 times that. The table applies that factor to every machine.
- A job on a persistent resource "is not separately charged": the resource is billed while it
  runs (Vertex AI, Overview of persistent resource).
"""
import dataclasses
import math

from launcher.jobs import durations

PRICES_OF = "2024-11"       # the Compute Engine figures; the Vertex factor is of 2026-10
SOURCE = "https://cloud.google.com/vertex-ai/pricing"
VERTEX_FACTOR = 1.15
DEFAULT_TIMEOUT_SECONDS = 7 * 24 * 3600      # Vertex's Scheduling.timeout default
GPUS_INCLUDED = ("g2-", "a2-")                # machine types whose list price includes their GPUs


def _vertex(on_demand, spot):
    return (round(on_demand * VERTEX_FACTOR, 4), round(spot * VERTEX_FACTOR, 4) if spot is not None else None)


# $ per hour of one machine with its GPUs on Vertex AI: (on-demand, Spot); None: not known here.
PER_HOUR = {
    "us-central1": {
        "g2-standard-8": _vertex(0.853624271, 0.321948),        # 1 x L4
        "g2-standard-24": _vertex(2.000832574, 0.742744),       # 2 x L4
        "g2-standard-48": _vertex(4.001665148, 1.485488),       # 4 x L4
        "g2-standard-96": _vertex(8.003330296, 2.970976),       # 8 x L4
        "a2-highgpu-1g": _vertex(3.673385, 1.469355),           # 1 x A100 40GB
        "a2-highgpu-2g": _vertex(7.34677, 2.93871),             # 2 x A100 40GB
        "n1-standard-8": _vertex(8 * 0.04749975, 8 * 0.01238),  # 8 x n1-standard-1, no GPU
    },
}


@dataclasses.dataclass
class Estimate:
    dollars: float          # None when a machine is unpriced
    line: str


def _machines(body):
    """``{(machine type, accelerator, count): replicas}`` of a customJobs.create body."""
    counted = {}
    for pool in body["jobSpec"]["workerPoolSpecs"]:
        if not pool:
            continue
        spec = pool["machineSpec"]
        key = (spec.get("machineType", "?"), spec.get("acceleratorType", ""), int(spec.get("acceleratorCount") or 0))
        counted[key] = counted.get(key, 0) + int(pool.get("replicaCount") or 1)
    return counted


def _what(counted):
    parts = []
    for (machine, accelerator, count), replicas in sorted(counted.items()):
        gpus = " with %d × %s each" % (count, accelerator.replace("NVIDIA_", "").replace("TESLA_", "")) \
            if accelerator and replicas > 1 else " (%d × %s)" % (count, accelerator.replace("NVIDIA_", "")
                                                                    .replace("TESLA_", "")) if accelerator else ""
        parts.append("%d × %s%s" % (replicas, machine, gpus))
    return " + ".join(parts)


def hourly(body, region, spot):
    """$ per hour of the whole job, or (None, the unpriced machines). The table's prices hold the
    GPUs of the machine types that come with them (g2, a2); GPUs attached to any other machine
    (N1 with T4s, say) are billed on their own, and are not priced here."""
    table = PER_HOUR.get(region, {})
    total, unpriced = 0.0, []
    for (machine, accelerator, count), replicas in _machines(body).items():
        price = table.get(machine, (None, None))[1 if spot else 0]
        if accelerator and count and not machine.startswith(GPUS_INCLUDED):
            price, machine = None, "%s with %d × %s attached" % (machine, count, accelerator)
        if price is None:
            unpriced.append(machine)
        else:
            total += price * replicas
    return (None, unpriced) if unpriced else (total, [])


def ceiling(body, region, capacity, hint="pass --timeout to lower this ceiling"):
    """The most the job may cost: every machine, at list price, until its timeout."""
    timeout = body["jobSpec"].get("scheduling", {}).get("timeout")
    seconds = int(timeout.rstrip("s")) if timeout else DEFAULT_TIMEOUT_SECONDS
    counted = _machines(body)
    if capacity.persistent_resource:
        return Estimate(0.0, "no charge of its own: a job on persistent resource %s is not billed separately; the "
                             "resource is billed for as long as it runs (Vertex AI: Overview of persistent resource)"
                             % capacity.persistent_resource)
    per_hour, unpriced = hourly(body, region, capacity.spot)
    basis = "Spot" if capacity.spot else "on-demand"
    until = "%s%s" % (durations.words(seconds), "" if timeout else
                      " (Vertex's default timeout%s)" % (": " + hint if hint else ""))
    if per_hour is None:
        return Estimate(None, "unknown: no %s list price here for %s in %s (%s); %s for up to %s"
                        % (basis, ", ".join(sorted(set(unpriced))), region, SOURCE, _what(counted), until))
    dollars = per_hour * seconds / 3600.0
    note = ", flex-start is billed at most this" if capacity.flex_start else ""
    return Estimate(dollars, "at most $%s (%s for %s, %s list price%s, %s, prices of %s)" % (
        money(dollars), _what(counted), until, basis, note, region, PRICES_OF))


def expected(body, region, capacity, seconds_per_step, steps, measured_in):
    """The cost of ``steps`` at a step time measured by an earlier run with the same settings; when
    the job's timeout ends it sooner, the step it would be stopped at."""
    per_hour, _ = hourly(body, region, capacity.spot)
    timeout = body["jobSpec"].get("scheduling", {}).get("timeout")
    limit = int(timeout.rstrip("s")) if timeout else DEFAULT_TIMEOUT_SECONDS
    seconds = min(seconds_per_step * steps, limit)
    cost = "$%s" % money(per_hour * seconds / 3600.0) if per_hour is not None and not capacity.persistent_resource \
        else "unpriced"
    measured = "%.2f s a step, measured in %s" % (seconds_per_step, measured_in)
    if seconds_per_step * steps > limit:
        return ("expected: %s, and no model of %d steps: the job's timeout of %s stops it at about step %d (%s); "
                "pass --timeout %s (its expected time and a tenth), or lower --max-steps" % (
                    cost, steps, durations.words(limit), int(limit / seconds_per_step), measured,
                    _enough(seconds_per_step * steps * 1.1)))
    return "expected: %s for %d steps (%s: %s)" % (cost, steps, measured, durations.words(max(60, int(seconds))))


def _enough(seconds):
    """A --timeout of at least ``seconds``, rounded up to whole hours (or minutes under an hour)."""
    if seconds > 3600:
        return "%dh" % math.ceil(seconds / 3600.0)
    return "%dm" % math.ceil(seconds / 60.0)


def money(dollars):
    return "{:,.0f}".format(dollars) if dollars >= 10 else "{:,.2f}".format(dollars)
