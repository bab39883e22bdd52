"""``--backend local``: the Vertex AI custom job body, run on this machine as Vertex would run it.

The plan is Vertex's (``vertex_plan.build_plan``), so the body is the one Vertex would get. Each worker
pool's replicas run as separate processes with the pool's ``containerSpec`` command and args, in
the environment a Vertex container gets: the image's own variables (``container.IMAGE_ENV``, the
Dockerfile's ``ENV``), ``TF_CONFIG`` and ``CLUSTER_SPEC`` naming loopback ports, and
``AIP_MODEL_DIR``, ``AIP_CHECKPOINT_DIR`` and ``AIP_TENSORBOARD_LOG_DIR`` under the job dir. The
user's own environment (credentials included) passes through. This is ``gcloud ai custom-jobs
local-run`` for several replicas, without Docker.

Jobs are recorded under ``SYNTHDET_LOCAL_JOBS`` (default ``~/.synthdet/local-jobs/<job id>/``):
``job.json`` (the body, state, times, exit codes) and ``log.jsonl`` (every replica's lines), so
``status``, ``logs``, ``list`` and ``cancel`` work as for Vertex jobs.
"""
import collections
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from launcher.errors import LauncherError, UsageError
from launcher.jobs import training, vertex_plan, vertex_spec
from tfproc import orphans
from trainer import container

POOL_TASK_TYPES = ("chief", "worker", "ps", "evaluator")     # TF_CONFIG's names for pools 0..3, as Vertex sets them
GRACE_SECONDS = 10
CHIEF = "workerpool0-0"     # the replica whose lines the screen shows (`launcher logs` has every replica's)
TAIL_LINES = 20             # a failed worker's last lines, shown after the job


def jobs_root():
    return os.environ.get("SYNTHDET_LOCAL_JOBS") or os.path.join(os.path.expanduser("~"), ".synthdet", "local-jobs")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def replica_environments(body, base_env=None):
    """``[(name, pool index, replica index, environment)]`` for every replica of the job body, as
    Vertex AI sets them: TF_CONFIG and CLUSTER_SPEC on loopback ports, the AIP_* folders under the
    job's base output directory, and the image's own variables over ``base_env``."""
    pools = body["jobSpec"]["workerPoolSpecs"]
    counts = [int((pool or {}).get("replicaCount") or 0) for pool in pools]
    ports = iter(_free_ports(sum(counts)))
    addresses = [["127.0.0.1:%d" % next(ports) for _ in range(count)] for count in counts]
    # Vertex's TF_CONFIG cluster holds chief, worker and ps, never the evaluator: it is no part of training.
    tf_cluster = {POOL_TASK_TYPES[i]: hosts for i, hosts in enumerate(addresses) if hosts and i < 3}
    pool_cluster = {"workerpool%d" % i: hosts for i, hosts in enumerate(addresses) if hosts}
    base = body["jobSpec"].get("baseOutputDirectory", {}).get("outputUriPrefix", "").rstrip("/")
    out = []
    for pool_index, count in enumerate(counts):
        for replica in range(count):
            env = container.image_environment(base_env if base_env is not None else os.environ)
            env["TF_CONFIG"] = json.dumps({"cluster": tf_cluster, "environment": "cloud",
                                           "task": {"type": POOL_TASK_TYPES[pool_index], "index": replica}})
            env["CLUSTER_SPEC"] = json.dumps({"cluster": pool_cluster, "environment": "cloud",
                                              "task": {"type": "workerpool%d" % pool_index, "index": replica}})
            if base:
                env.update(AIP_MODEL_DIR=base + "/model/", AIP_CHECKPOINT_DIR=base + "/checkpoints/",
                           AIP_TENSORBOARD_LOG_DIR=base + "/logs/")
            env["CLOUD_ML_JOB_ID"] = body.get("displayName", "")
            out.append(("workerpool%d-%d" % (pool_index, replica), pool_index, replica, env))
    return out


class LocalBackend(training.Backend):
    name = "local"

    def plan(self, request, dry_run=False):
        if request.tensorboard:
            raise UsageError("--tensorboard is a Vertex TensorBoard; a local job writes its summaries to the job "
                             "dir (tensorboard --logdir JOB_DIR)")
        return vertex_plan.build_plan(request, self.project, self.region, local=True, dry_run=dry_run)

    # -- the job's record ---------------------------------------------------------------------

    def folder(self, job_id):
        return os.path.join(jobs_root(), job_id)

    def _read(self, job_id):
        try:
            with open(os.path.join(self.folder(job_id), "job.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise LauncherError("cannot read the local job %s: %s" % (job_id, error))

    def _write(self, record):
        folder = self.folder(record["displayName"])
        os.makedirs(folder, exist_ok=True)
        temporary = os.path.join(folder, "job.json.tmp-%d" % os.getpid())
        with open(temporary, "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
        os.replace(temporary, os.path.join(folder, "job.json"))

    def _job(self, record):
        state = record.get("state", "QUEUED")
        if state in ("RUNNING", "PREPARING", "CANCELLING") and orphans.process_gone(int(record.get("pid") or 0)):
            state = "FAILED"
            record = dict(record, error=record.get("error") or "the process that ran it (pid %s) is gone"
                          % record.get("pid"))
        return training.Job(id=record["displayName"], name=record["displayName"], state=state,
                            error=record.get("error", ""), create_time=record.get("createTime", ""),
                            start_time=record.get("startTime", ""), end_time=record.get("endTime", ""),
                            console_url="file://" + self.folder(record["displayName"]),
                            log_id=record["displayName"], raw=record)

    # -- submit: run the job in the foreground --------------------------------------------------

    def submit(self, plan, on_line=None):
        """Run the job here and return when it ends; a job with the id that ended FAILED or
        CANCELLED is run again as ``<id>_attempt2`` (resuming from the job dir's checkpoints), a
        SUCCEEDED one is returned as it is, and a RUNNING one (another launcher's) is waited for. ``on_line(text)`` gets every replica's
        lines, prefixed with its pool and index (default: printed)."""
        def existing(job_id, body):
            record = self._read(job_id)
            if record is None:
                return None
            if not vertex_spec.contains(record.get("jobSpec") or {}, body["jobSpec"]):
                raise UsageError("a local job named %s already exists with another spec (%s); pass another "
                                 "--job-id" % (job_id, self.folder(job_id)))
            job = self._job(record)
            if not job.done:        # run by another launcher: follow it to its end, as its own launcher does
                (on_line or _print_line)("job %s is running in another process (pid %s); waiting for it to end"
                                         % (job_id, record.get("pid")))
                job = self.wait(job_id, interval=1.0)
            return job

        return self._submit_attempt(plan, vertex_spec.with_job_id, existing,
                                    lambda body: self._run(body, on_line or _print_line))

    def check_job_dir(self, request):
        job_dir = request.job_dir
        if job_dir.startswith("gs://"):
            return super().check_job_dir(request)
        if os.path.isdir(job_dir) and os.listdir(job_dir) and not request.resume:
            raise UsageError("%s already holds files (%s): the job would resume from its checkpoints. Pass "
                             "--resume to do that (with a larger --max-steps), or use an empty --job-dir"
                             % (job_dir, sorted(os.listdir(job_dir))[0]))

    def _run(self, body, on_line):
        record = dict(body, state="PREPARING", createTime=_now(), pid=os.getpid())
        self._write(record)
        folder = self.folder(body["displayName"])
        log_lock = threading.Lock()
        log = open(os.path.join(folder, "log.jsonl"), "a")
        replicas = []

        last_lines = {}

        def pump(name, stream):
            """Every replica's lines go to the job's log; only the chief's reach the screen (the others
            say the same), and a worker's last lines if it fails."""
            last_lines[name] = tail = collections.deque(maxlen=TAIL_LINES)
            for raw in iter(stream.readline, b""):
                text = raw.decode("utf-8", "replace").rstrip("\n")
                with log_lock:
                    log.write(json.dumps({"timestamp": _now(), "severity": "INFO", "textPayload": text,
                                          "labels": {"replica": name}}) + "\n")
                    log.flush()
                    if name == CHIEF:
                        on_line("[%s] %s" % (name, text))
                    else:
                        tail.append(text)

        cancelled, stopping = [], []

        def stop_all():
            """SIGTERM, then SIGKILL after the grace period, as Kubernetes stops a pod (under a
            multi-worker strategy Model Garden takes SIGTERM as a preemption: it saves a checkpoint
            and goes on)."""
            if not stopping:
                stopping.append(time.monotonic() + GRACE_SECONDS)
            for _, process, _ in replicas:
                if process.poll() is None:
                    process.terminate()

        def cancel(signum, frame):
            cancelled.append(signum)
            stop_all()

        previous = {sig: signal.signal(sig, cancel) for sig in (signal.SIGINT, signal.SIGTERM)} \
            if threading.current_thread() is threading.main_thread() else {}
        try:
            pools = body["jobSpec"]["workerPoolSpecs"]
            for name, pool_index, _, env in replica_environments(body):
                spec = pools[pool_index]["containerSpec"]
                command = list(spec.get("command") or []) + list(spec.get("args") or [])
                if command[:1] == ["python"]:
                    command[0] = sys.executable       # the image's python is this environment's
                for key, value in (spec.get("env") or {}).items() if isinstance(spec.get("env"), dict) else \
                        ((e["name"], e["value"]) for e in spec.get("env") or []):
                    env[key] = value
                env[container.LAUNCHER_PID] = str(os.getpid())
                process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
                reader = threading.Thread(target=pump, args=(name, process.stdout), daemon=True)
                reader.start()
                replicas.append((name, process, reader))
            record.update(state="RUNNING", startTime=_now())
            self._write(record)
            failed = None
            while any(process.poll() is None for _, process, _ in replicas):
                for name, process, _ in replicas:
                    if process.poll() not in (None, 0) and failed is None and not cancelled:
                        failed = (name, process.returncode)
                        stop_all()          # Vertex ends the job when a replica fails
                if stopping and time.monotonic() > stopping[0]:
                    for _, process, _ in replicas:
                        if process.poll() is None:
                            process.kill()
                time.sleep(0.2)
            for name, process, reader in replicas:
                reader.join(timeout=10)
                if process.returncode not in (0,) and failed is None and not cancelled:
                    failed = (name, process.returncode)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            log.close()
        record["exitCodes"] = {name: process.returncode for name, process, _ in replicas}
        if failed and failed[0] != CHIEF and not cancelled:
            for text in last_lines.get(failed[0], ()):
                on_line("[%s] %s" % (failed[0], text))
        if cancelled:
            record.update(state="CANCELLED", error="cancelled (signal %d)" % cancelled[0])
        elif failed:
            record.update(state="FAILED", error="replica %s exited with status %s" % failed)
        else:
            record["state"] = "SUCCEEDED"
        record["endTime"] = _now()
        self._write(record)
        return self._job(record)

    # -- following jobs -----------------------------------------------------------------------

    def get(self, job):
        record = self._read(job)
        if record is None:
            raise LauncherError("no local job named %s in %s" % (job, jobs_root()))
        return self._job(record)

    def cancel(self, job):
        current = self.get(job)
        if current.done:
            raise LauncherError("local job %s has ended already (%s)" % (job, current.state))
        os.kill(int(current.raw["pid"]), signal.SIGTERM)

    def list(self, limit=20):
        root = jobs_root()
        names = sorted(os.listdir(root)) if os.path.isdir(root) else []
        jobs = [self._job(r) for r in (self._read(name) for name in names) if r]
        return sorted(jobs, key=lambda j: j.create_time, reverse=True)[:limit]

    def logs(self, job, after=None):
        self.get(job)
        path = os.path.join(self.folder(job), "log.jsonl")
        if not os.path.exists(path):
            return
        with open(path) as f:
            for line in f:
                entry = json.loads(line)
                if not after or entry["timestamp"] >= after:
                    entry["textPayload"] = "[%s] %s" % (entry["labels"]["replica"], entry["textPayload"])
                    yield entry

    def gcloud_follow(self, job):
        return []


def _print_line(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
