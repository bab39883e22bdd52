"""``python -m launcher``: Unity Simulation transfers, training jobs (Vertex AI and AI Platform) and the end-to-end pipeline."""
import json
import os
import re
import sys
import time

import click

from launcher import backends, cloudlogging, jobspec, training, usim
from launcher.errors import LauncherError, UsageError

DEPRECATION = ("Note: Google shut down legacy AI Platform Training (the ml v1 API) on 2025-01-31; "
               "train on its successor, Vertex AI (--backend vertex, the default). Use --api-endpoint or "
               "CLOUDSDK_API_ENDPOINT_OVERRIDES_ML for an endpoint that still serves ml v1.")


class Group(click.Group):
    """Shows LauncherError as one line and exits with its code; no traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LauncherError as error:
            click.echo("error: %s" % error, err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Move a Unity Simulation run into your bucket, then train the object detector on Vertex AI
    (or the seed's built-in algorithm on AI Platform) and follow the job (seed 003, phases 1 and 3).

    \b
    The flow:
      python -m launcher transfer --run-definition-id D --run-execution-id E --bucket B --wait
      python main.py --source gs://B/projects/.../urn:run_executions:E --eval-pct 20 --runner DataflowRunner ...
      python -m launcher train --backend vertex --project P --region R --dataset gs://.../output --job-dir gs://.../model
      python -m launcher logs JOB --backend vertex --project P --region R --follow
    """


# -- Unity Simulation ---------------------------------------------------------------------------

def _usim_options(command):
    command = click.option("--api-url", help="Unity Simulation API (default: USIM_API_URL or %s)" % usim.DEFAULT_API)(command)
    command = click.option("--token", help="access token (default: USIM_ACCESS_TOKEN or ~/.usim/token.json)")(command)
    command = click.option("--project-id", help="Unity project id (default: USIM_PROJECT_ID or ~/.usim/project_id.txt)")(command)
    return command


def _transfer_client(api_url, token, project_id):
    return usim.TransferClient(usim.resolve_api_url(api_url), usim.resolve_project_id(project_id),
                               usim.resolve_token(token))


def _print_transfer(transfer):
    click.echo("transfer %s: %s" % (usim.transfer_id(transfer), usim.transfer_status(transfer) or "unknown"))


@main.command()
@click.option("--run-definition-id", required=True, help="the run's definition id (`usim get runs`)")
@click.option("--run-execution-id", required=True, help="the run's execution id (`usim get runs`)")
@click.option("--bucket", required=True, help="your GCS bucket (name only, without gs://)")
@click.option("--wait", is_flag=True, help="poll until the transfer ends; exit 0 only on success")
@click.option("--timeout", default=6 * 3600, show_default=True, type=int, help="seconds to wait at most")
@click.option("--interval", default=15.0, show_default=True, type=float, help="seconds between polls")
@_usim_options
def transfer(run_definition_id, run_execution_id, bucket, wait, timeout, interval, api_url, token, project_id):
    """Ask Unity Simulation to copy a run into your bucket.

    The bucket must first grant Unity's transfer service accounts access (seed 003, phase 1).
    """
    bucket = bucket[len("gs://"):] if bucket.startswith("gs://") else bucket
    client = _transfer_client(api_url, token, project_id)
    started = client.start(bucket.strip("/"), run_definition_id, run_execution_id)
    _print_transfer(started)
    transfer_id = usim.transfer_id(started)
    if not wait:
        click.echo("follow it with: python -m launcher transfer-status %s" % transfer_id)
        return
    if usim.transfer_status(started) in usim.TERMINAL and usim.transfer_status(started) != "success":
        raise LauncherError("data transfer %s failed: %s" % (transfer_id, started.get("message") or "no message given"))
    began = time.monotonic()
    done = client.wait(transfer_id, timeout, interval, on_poll=lambda t: click.echo(
        "[%5.0fs] transfer %s: %s" % (time.monotonic() - began, transfer_id, usim.transfer_status(t)), err=True))
    click.echo("transfer %s: %s; the run is in gs://%s/projects/%s/run_executions/urn:run_definitions:%s/"
               "urn:run_executions:%s" % (transfer_id, usim.transfer_status(done), bucket, client.project_id,
                                          run_definition_id, run_execution_id))


@main.command("transfer-status")
@click.argument("transfer_id")
@_usim_options
def transfer_status(transfer_id, api_url, token, project_id):
    """Show one data transfer."""
    transfer = _transfer_client(api_url, token, project_id).get(transfer_id)
    click.echo(json.dumps(transfer, indent=2, sort_keys=True))


# -- training jobs ------------------------------------------------------------------------------

def _project_option(command):
    return click.option("--project", envvar="GOOGLE_CLOUD_PROJECT",
                        help="Google Cloud project (default: GOOGLE_CLOUD_PROJECT; not needed with --backend local "
                             "or --dry-run)")(command)


def _endpoint_option(command):
    return click.option("--api-endpoint", help="the jobs API's endpoint (default: CLOUDSDK_API_ENDPOINT_OVERRIDES_"
                                               "AIPLATFORM or _ML, else Google's)")(command)


def _backend_options(command):
    command = click.option("--region", default="us-central1", show_default=True, help="the jobs' region")(command)
    command = click.option("--backend", type=click.Choice(backends.BACKENDS), default="vertex", show_default=True,
                           help="vertex: Vertex AI custom jobs; local: the same job body run on this machine, each "
                                "replica a process, as Vertex runs it; ml: AI Platform Training (ml v1, shut down "
                                "by Google on 2025-01-31)")(command)
    return command


def _not_empty(ctx, param, value):
    """An option given an empty value (an unset shell variable) is refused, not dropped."""
    if value is not None and not value.strip():
        raise click.BadParameter("is empty (an unset shell variable?): give it a value, or leave the option out")
    return value


def _capacity_options(command):
    """How a Vertex job gets its machines (aiplatform v1 Scheduling, DiskSpec, reservations, CMEK)."""
    options = [
        click.option("--spot", is_flag=True, help="vertex: Spot VMs (scheduling.strategy SPOT): cheaper, may be "
                                                  "preempted; the trainer resumes from its newest checkpoint"),
        click.option("--flex-start", is_flag=True, help="vertex: wait for scarce GPUs with Dynamic Workload Scheduler "
                                                        "(scheduling.strategy FLEX_START)"),
        click.option("--max-wait", callback=_not_empty, metavar="DURATION",
                     help="with --flex-start: how long to wait for the machines, "
                          "e.g. 2h (0: no end; Vertex's default: 24 h)"),
        click.option("--restart-on-worker-restart/--no-restart-on-worker-restart", default=None,
                     help="vertex: restart the whole job when one worker restarts (default: on with more than one "
                          "replica, which multi-worker training needs)"),
        click.option("--disable-retries", is_flag=True, help="vertex: do not retry the job after internal errors"),
        click.option("--boot-disk-size-gb", type=int, help="vertex: every machine's boot disk (Vertex's default: 100)"),
        click.option("--boot-disk-type", type=click.Choice(["pd-ssd", "pd-standard", "hyperdisk-balanced"]),
                     help="vertex: every machine's boot disk type (Vertex's default: pd-ssd)"),
        click.option("--reservation", callback=_not_empty, metavar="projects/P/zones/Z/reservations/R",
                     help="vertex: take the machines from this Compute Engine reservation"),
        click.option("--persistent-resource", callback=_not_empty, metavar="ID",
                     help="vertex: run on this persistent resource's machines"),
        click.option("--kms-key", callback=_not_empty, metavar="projects/P/locations/L/keyRings/K/cryptoKeys/C",
                     help="vertex: the customer-managed key that encrypts the job (same region as the job)"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _capacity(options):
    """The capacity flags, taken out of a command's keyword arguments."""
    from launcher.capacity import Capacity
    return Capacity(
        spot=options.pop("spot"), flex_start=options.pop("flex_start"), max_wait=options.pop("max_wait") or "",
        restart_on_worker_restart=options.pop("restart_on_worker_restart"),
        disable_retries=options.pop("disable_retries"), boot_disk_size_gb=options.pop("boot_disk_size_gb"),
        boot_disk_type=options.pop("boot_disk_type") or "", reservation=options.pop("reservation") or "",
        persistent_resource=options.pop("persistent_resource") or "", kms_key=options.pop("kms_key") or "")


def _hyperparameter_options(command):
    for name, default in reversed(list(jobspec.HYPERPARAMETERS.items())):
        help_text = "the seed's --%s (default: %s)" % (name, default)
        if name == "image_size":
            help_text = "height,width (default: vertex: the dataset's most common resolution; ml: %s)" % default
        elif name == "num_eval_images":
            help_text = "default: 200, or all the validation images if fewer"
        command = click.option("--" + name.replace("_", "-"), name, default=None, type=type(default),
                               help=help_text)(command)
    return command


def _backend(backend, project, region, api_endpoint, logging_endpoint=None, dry_run=False):
    if not project and backend != "local":
        if not dry_run:
            raise UsageError("pass --project (or set GOOGLE_CLOUD_PROJECT); --backend local needs none")
        project = "PROJECT"
    return backends.backend(backend, project, region, api_endpoint, logging_endpoint)


@main.command()
@_project_option
@click.option("--dataset", help="a conversion output folder (gs://.../output): data patterns, "
                                "num_classes and validation images come from its summary.json")
@click.option("--job-dir", required=True, help="gs:// folder for the model and checkpoints")
@click.option("--job-id", help="the job's name; a retry with the same id never starts a second job "
                               "(default: synthdet_<yyyymmdd_HHMMSS>)")
@_backend_options
@click.option("--image", envvar="SYNTHDET_IMAGE", help="vertex: the project's image that runs the trainer, "
                                                       "built by cloudbuild.yaml (default: SYNTHDET_IMAGE)")
@click.option("--accelerator", type=click.Choice(["gpu", "a100", "cpu", "tpu"]),
              help="vertex and local: gpu (default; NVIDIA L4 on g2-standard machines), a100 (a2-highgpu) or cpu "
                   "(n1-standard-8; locally this machine's CPU); tpu is refused (the image has no TPU runtime). "
                   "ml: tpu (default; the seed's P100 master and one cloud_tpu worker) or gpu (one P100)")
@click.option("--gpus", type=click.Choice(["1", "2", "4", "8"]), default="1", show_default=True,
              help="vertex: GPUs on the machine; more than one trains with the mirrored strategy")
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True,
              help="vertex: machines; more than one trains with multi_worker_mirrored")
@click.option("--worker-pool-spec-file", type=click.Path(dir_okay=False),
              help="vertex: your own workerPoolSpecs as JSON/YAML (replaces --accelerator)")
@click.option("--backbone", type=click.Choice(["resnet-50", "resnet-18", "mobilenet"]), default="resnet-50",
              show_default=True, help="vertex: the trainer's backbone")
@click.option("--model-size", type=click.Choice(["full", "small"]), default="full", show_default=True,
              help="vertex, local: the trainer's --model-size (small: a thin MobileNetV2 detector for quick tries)")
@click.option("--init-checkpoint", metavar="imagenet|none|gs://...",
              help="vertex: where the backbone starts (default: imagenet for resnet-50, Model Garden's published "
                   "ImageNet checkpoint; none for the others)")
@click.option("--params-override", "params_overrides", multiple=True, metavar="YAML|JSON|FILE",
              help="vertex: Model Garden settings for the trainer, checked before sending (repeatable)")
@click.option("--service-account", help="vertex: the account the job runs as")
@click.option("--network", help="vertex: a peered VPC network, projects/NUMBER/global/networks/NAME")
@click.option("--timeout", help="vertex: stop the job after this long, e.g. 3h, 90m (Vertex's default: 7 days)")
@click.option("--labels", "labels", multiple=True, metavar="KEY=VALUE", help="vertex or ml: job labels (repeatable)")
@click.option("--tensorboard", help="vertex: a Vertex TensorBoard, projects/P/locations/R/tensorboards/ID "
                                    "(needs --service-account)")
@click.option("--enable-web-access", is_flag=True, help="vertex: an interactive shell into the running job")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="ml: a gcloud config.yaml with trainingInput (replaces --accelerator)")
@click.option("--training-data", help="ml: training TFRecord pattern (overrides --dataset)")
@click.option("--validation-data", help="ml: validation TFRecord pattern (overrides --dataset)")
@click.option("--num-classes", type=int, help="overrides the dataset's num_classes")
@_hyperparameter_options
@click.option("--arg", "extra_args", multiple=True, metavar="NAME=VALUE",
              help="ml: any other algorithm argument, e.g. --arg learning_rate_decay_type=cosine (repeatable)")
@click.option("--resume", is_flag=True, help="allow a job dir that holds files: the job resumes from its checkpoints")
@_capacity_options
@click.option("--step-time-from", metavar="MODEL_DIR", help="vertex, local: a finished run's model dir; its measured "
                                                            "step time gives the expected cost of --max-steps "
                                                            "(default with --resume: the job dir)")
@click.option("--dry-run", is_flag=True, help="print the request, the gcloud command and the price ceiling; send "
                                              "nothing")
@_endpoint_option
def train(project, backend, region, api_endpoint, dry_run, labels, gpus, **options):
    """Submit a training job: this project's trainer on Vertex AI (default), or the seed's built-in
    image object detection job on AI Platform (--backend ml).

    Everything is checked before anything is sent: the job id, the job dir (refused if it holds
    files, unless --resume), num_classes against the label map, num_eval_images against the
    validation images, image_size, the overrides and the options.
    """
    options["job_id"] = options["job_id"] or time.strftime("synthdet_%Y%m%d_%H%M%S")
    hyperparameters = {name: options.pop(name) for name in jobspec.HYPERPARAMETERS}
    request = training.TrainRequest(
        hyperparameters={k: v for k, v in hyperparameters.items() if v is not None},
        labels=training.parse_labels(labels), gpus=int(gpus), capacity=_capacity(options),
        **{k: (v if v is not None else "") if k not in ("num_classes",) else v for k, v in options.items()})
    jobs = _backend(backend, project, region, api_endpoint, dry_run=dry_run)
    plan = jobs.plan(request, dry_run=dry_run)
    if dry_run:
        _check_job_dir_if_possible(jobs, request, plan)
        click.echo("%s (not sent):" % plan.endpoint)
        click.echo(json.dumps(plan.body, indent=2))
        click.echo("\nThe same with gcloud (%s as below):\n" % plan.config_name)
        click.echo(plan.gcloud)
        if plan.config_text:
            click.echo("\n# %s\n%s" % (plan.config_name, plan.config_text))
        for note in plan.unchecked:
            click.echo("not checked: %s" % note)
        _print_costs(plan, backend)
        return
    if backend == "ml":
        click.echo(DEPRECATION, err=True)
    _print_costs(plan, backend, err=True)
    if backend == "local":
        click.echo("running job %s here: %d replica(s); its record: %s" % (
            request.job_id, sum(int(p.get("replicaCount") or 1) for p in plan.body["jobSpec"]["workerPoolSpecs"]),
            jobs.folder(request.job_id)), err=True)
    submission = jobs.submit(plan)
    job = submission.job
    if submission.retried_after is not None:
        click.echo("job %s ended %s%s; started attempt %s, which resumes from the checkpoints in %s" % (
            submission.retried_after.name, submission.retried_after.state,
            " (%s)" % submission.retried_after.error if submission.retried_after.error else "", job.name,
            request.job_dir))
    if backend == "local":
        click.echo("local job %s: %s%s" % (job.name, job.state, " (%s)" % job.error if job.error else ""))
        click.echo("its model: %s" % request.job_dir)
    elif backend == "vertex":
        click.echo("%s Vertex job %s (id %s, %s)" % ("submitted" if submission.created else
                                                     "already submitted, not started again:", job.name, job.id, job.state))
    else:
        click.echo("%s job %s (%s)" % ("submitted" if submission.created else "already submitted:", job.id, job.state))
    if backend != "local":
        click.echo("console: %s" % job.console_url)
        where = "--backend %s --project %s --region %s" % (backend, project, region)
        follow = ["python -m launcher status %s %s" % (job.id, where),
                  "python -m launcher logs %s %s --follow" % (job.id, where)] + jobs.gcloud_follow(job)
        click.echo("follow it with:\n" + "\n".join("  " + line for line in follow))
    if job.state in training.ENDED_BADLY:
        raise LauncherError("job %s ended %s%s" % (job.name, job.state, ": " + job.error if job.error else ""))


def _print_costs(plan, backend, err=False):
    if backend == "ml":
        click.echo("price: none shown; AI Platform Training (ml v1) was shut down on 2025-01-31, so Google refuses "
                   "this request", err=err)
        return
    prefix = "here: no charge; the same job on Vertex AI: " if backend == "local" else "price: "
    for line in plan.costs:
        click.echo(prefix + line, err=err)
        prefix = "  "


def _check_job_dir_if_possible(jobs, request, plan):
    from launcher import google_api
    if not request.job_dir.startswith("gs://") and jobs.name != "local":
        return
    if request.job_dir.startswith("gs://") and not google_api.has_credentials():
        plan.unchecked.append("no Google credentials: whether %s already holds files was not checked" % request.job_dir)
        return
    jobs.check_job_dir(request)


@main.command()
@click.argument("job_id")
@_project_option
@_backend_options
@_endpoint_option
def status(job_id, project, backend, region, api_endpoint):
    """Show a job's state, times and error. JOB: the job id (vertex: its numeric id, its full
    resource name, or the --job-id name it was submitted with)."""
    click.echo(_backend(backend, project, region, api_endpoint).get(job_id).describe())


@main.command()
@click.argument("job_id")
@_project_option
@_backend_options
@click.option("--interval", default=60.0, show_default=True, type=float, help="seconds between polls")
@_endpoint_option
def wait(job_id, project, backend, region, interval, api_endpoint):
    """Poll until the job ends; exit 0 only if it SUCCEEDED."""
    began = time.monotonic()
    job = _backend(backend, project, region, api_endpoint).wait(job_id, interval, on_state=lambda j: click.echo(
        "[%5.0fs] job %s: %s" % (time.monotonic() - began, job_id, j.state), err=True))
    click.echo(job.describe())
    if job.state != "SUCCEEDED":
        raise LauncherError("job %s ended %s%s" % (job_id, job.state, ": " + job.error if job.error else ""))


@main.command()
@click.argument("job_id")
@_project_option
@_backend_options
@click.option("--follow", is_flag=True, help="keep printing new entries until the job ends")
@click.option("--interval", default=15.0, show_default=True, type=float, help="seconds between polls with --follow")
@click.option("--logging-endpoint", help="Cloud Logging endpoint (default: CLOUDSDK_API_ENDPOINT_OVERRIDES_LOGGING or Google's)")
@_endpoint_option
def logs(job_id, project, backend, region, follow, interval, logging_endpoint, api_endpoint):
    """Print the job's log entries from Cloud Logging."""
    jobs = _backend(backend, project, region, api_endpoint, logging_endpoint)
    seen, after = set(), None
    while True:
        ended = follow and jobs.get(job_id).done
        for entry in jobs.logs(job_id, after):
            key = entry.get("insertId") or json.dumps(entry, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            after = entry.get("timestamp") or after
            click.echo(cloudlogging.format_entry(entry))
        if not follow or ended:
            return
        time.sleep(interval)


@main.command()
@click.argument("job_id")
@_project_option
@_backend_options
@_endpoint_option
def cancel(job_id, project, backend, region, api_endpoint):
    """Cancel a job."""
    _backend(backend, project, region, api_endpoint).cancel(job_id)
    click.echo("cancel requested for job %s" % job_id)


@main.command("list")
@_project_option
@_backend_options
@click.option("--limit", default=20, show_default=True, type=int)
@_endpoint_option
def list_jobs(project, backend, region, limit, api_endpoint):
    """List the project's most recent jobs."""
    for job in _backend(backend, project, region, api_endpoint).list(limit):
        click.echo("%-40s %-10s %s" % (job.title(), job.state, job.create_time))


# -- the end-to-end pipeline ---------------------------------------------------------------------

@main.group()
def pipeline():
    """The whole chain as one Kubeflow pipeline: transfer, convert, train (and fine-tune on real
    photos), evaluate, compare with production, promote (seeds 000-002 and 004).

    \b
      python -m launcher pipeline compile --output synthdet_pipeline.yaml
      python -m launcher pipeline run --local --source RUN --work-dir runs/p [--real-dataset REAL_OUT]
      python -m launcher pipeline run --project P --region R --pipeline-root gs://B/pipelines --image IMAGE \\
          --run-definition-id D --run-execution-id E --bucket B --usim-token-secret projects/P/secrets/usim \\
          [--schedule "0 3 1,15 * *"]
      python -m launcher pipeline promote --candidate WORK_DIR/runs/RUN/candidate --production PROD --run RUN
      python -m launcher pipeline promote --rollback --production PROD
    """


def _check_metric(ctx, param, value):
    """``synthetic.AP``, ``real.AP50``, ...: a split and a COCO metric."""
    from trainer import cocoap
    where, _, key = (value or "").partition(".")
    if value and (where not in ("synthetic", "real") or key not in cocoap.SUPPORTED):
        raise click.BadParameter("takes synthetic.KEY or real.KEY with KEY one of %s (the metrics the paired "
                                 "bootstrap puts an interval on), got %r" % (", ".join(cocoap.SUPPORTED), value))
    return value


def _check_eval_pct(ctx, param, value):
    """The pipeline evaluates the candidate on the eval split and trains it on the rest: both need images."""
    if value in (0, 100):
        raise click.BadParameter("takes a share above 0 and below 100 (the candidate is trained on the train split "
                                 "and evaluated on the eval split, so both need images), got %g" % value)
    return value


def _check_timeout(ctx, param, value):
    if value:
        try:
            training.timeout_seconds(value)
        except UsageError as error:
            raise click.BadParameter(str(error).replace("--timeout ", "", 1))
    return value


def _pipeline_parameter_options(command):
    options = [
        click.option("--source", default="", help="a run or dataset folder (skips the transfer)"),
        click.option("--run-definition-id", default="", help="with --run-execution-id and --bucket: transfer the run first"),
        click.option("--run-execution-id", default=""),
        click.option("--bucket", default=""),
        click.option("--usim-token-secret", default="", metavar="projects/P/secrets/S[/versions/V]",
                     help="the Unity Simulation token in Secret Manager (cloud runs; locally the usual places)"),
        click.option("--eval-pct", default=20.0, show_default=True, type=click.FloatRange(0, 100),
                     callback=_check_eval_pct),
        click.option("--real-dataset", default="", help="real photos converted by real_data_loader.py (seed 002)"),
        click.option("--finetune-dataset", default="", help="real photos converted with the synthetic label map: "
                                                            "fine-tune the candidate on them, then evaluate that"),
        click.option("--finetune-steps", default=2000, show_default=True, type=click.IntRange(min=1),
                     help="steps of the fine-tuning"),
        click.option("--production-dir", default="", help="where production models live (default: WORK_DIR/production)"),
        click.option("--promote", "promote_mode", type=click.Choice(["manual", "auto"]), default="manual", show_default=True,
                     help="manual: a report and the command that promotes; auto: promote a better candidate"),
        click.option("--min-improvement", default=0.0, show_default=True, type=click.FloatRange(min=0),
                     help="the verdict is better only when the whole 95% interval of the difference lies above "
                          "this (e.g. 0.01 for one AP point)"),
        click.option("--metric", default="", callback=_check_metric, help="what decides, e.g. real.AP (default: real.AP with --real-dataset, else synthetic.AP)"),
        click.option("--backbone", default="resnet-50", show_default=True,
                     type=click.Choice(["resnet-50", "resnet-18", "mobilenet"])),
        click.option("--init-from", default="", type=click.Choice(["", "production"]), metavar="production",
                     help="production: start the candidate from the current production model's whole network "
                          "(seed 004); with none yet, from --init-checkpoint"),
        click.option("--init-checkpoint", default="", help="where the backbone starts (default: imagenet on Vertex "
                                                           "for resnet-50, none locally)"),
        click.option("--params-override", default="", help="for the trainer (YAML or JSON)"),
        click.option("--beam-arg", "beam_args", multiple=True, help="an option for main.py / Beam, e.g. --runner=DataflowRunner (repeatable)"),
        click.option("--accelerator", default="gpu", show_default=True, type=click.Choice(["gpu", "a100", "cpu"]),
                     help="Vertex training machines"),
        click.option("--timeout", "train_timeout", default="", callback=_check_timeout, metavar="DURATION",
                     help="vertex: stop each training job (train, fine-tune) after this long, e.g. 12h, 2d "
                          "(Vertex's default: 7 days)"),
    ]
    for name, default in jobspec.HYPERPARAMETERS.items():
        if name == "image_size":
            options.append(click.option("--image-size", default="", help="default: the dataset's most common resolution"))
        elif name == "num_eval_images":
            options.append(click.option("--num-eval-images", default=0, show_default=True, type=click.IntRange(min=0),
                                        help="0: the seed's 200, or all the eval images if fewer"))
        elif name == "warmup_steps":
            options.append(click.option("--warmup-steps", default=0, show_default=True, type=click.IntRange(min=0),
                                        help="0: the trainer's (the seed's 500, or a tenth of --max-steps if fewer)"))
        elif name in ("max_steps", "train_batch_size", "train_steps_per_eval"):
            options.append(click.option("--" + name.replace("_", "-"), name, default=default, show_default=True,
                                        type=click.IntRange(min=1)))
        else:
            options.append(click.option("--" + name.replace("_", "-"), name, default=default, show_default=True,
                                        type=type(default)))
    for option in reversed(options):
        command = option(command)
    return command


def _arguments(kw, work_dir, backend, project, region, image, run_name=""):
    values = {key: kw[key] for key in ("source", "run_definition_id", "run_execution_id", "bucket", "usim_token_secret",
                                       "eval_pct", "real_dataset", "finetune_dataset", "metric", "backbone",
                                       "params_override", "accelerator", "image_size", "promote_mode",
                                       "init_checkpoint", "min_improvement", "init_from", "train_timeout")}
    values.update({name: kw[name] for name in jobspec.HYPERPARAMETERS if name != "image_size"})
    values.update(work_dir=work_dir.rstrip("/"), backend=backend, project=project or "", region=region,
                  production_dir=(kw["production_dir"] or work_dir.rstrip("/") + "/production"),
                  beam_args=json.dumps(list(kw["beam_args"])), image=image, run_name=run_name,
                  finetune_steps=kw["finetune_steps"] if kw["finetune_dataset"] else 0)
    if not values["source"] and not (values["run_execution_id"] and values["bucket"]):
        raise LauncherError("pass --source, or --run-definition-id, --run-execution-id and --bucket", exit_code=2)
    if values["params_override"]:
        from trainer import config as trainer_config
        try:
            parsed = trainer_config.parse_override(values["params_override"])
            trainer_config.check_overrides([parsed])
            values["params_override"] = json.dumps(parsed)
        except trainer_config.ConfigError as error:
            raise LauncherError(str(error), exit_code=2)
    return values


@pipeline.command("compile")
@click.option("--output", default="synthdet_pipeline.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--image", default="synthdet:latest", show_default=True, help="the project's image the components run in")
def compile_pipeline(output, image):
    """Write the KFP v2 pipeline spec (YAML), to upload to any Kubeflow Pipelines or Vertex AI Pipelines."""
    require_extra("kfp", "pipeline")
    from launcher import pipeline as pipeline_lib
    pipeline_lib.compile_to(output, image)
    click.echo("pipeline spec: %s (steps: %s; image %s)" % (output, ", ".join(pipeline_lib.STEPS), image))


@pipeline.command("run")
@click.option("--local", is_flag=True, help="run on this machine with KFP's local runner (no cloud account)")
@click.option("--work-dir", help="the root of the runs' folders, WORK_DIR/runs/<run>/ (default with Vertex: "
                                 "PIPELINE_ROOT/work)")
@click.option("--project", envvar="GOOGLE_CLOUD_PROJECT", help="Vertex AI: the project")
@click.option("--region", default="us-central1", show_default=True)
@click.option("--pipeline-root", help="Vertex AI: gs:// folder for the runs' artifacts")
@click.option("--image", envvar="SYNTHDET_IMAGE", default="synthdet:latest", show_default=True,
              help="the project's image (README: the image)")
@click.option("--schedule", help='Vertex AI: create a schedule with this cron instead of one run, e.g. '
                                 '"0 3 1,15 * *" or "CRON_TZ=Europe/Paris 0 3 * * MON"')
@click.option("--run-id", help="Vertex AI: the pipeline run's id (default: synthdet-<time>)")
@click.option("--service-account", help="Vertex AI: the account the pipeline runs as")
@click.option("--network", help="Vertex AI: a peered VPC network, projects/NUMBER/global/networks/NAME")
@click.option("--labels", "labels", multiple=True, metavar="KEY=VALUE", help="Vertex AI: labels of the run or schedule")
@click.option("--dry-run", is_flag=True, help="print the request; send nothing (no account needed)")
@click.option("--verbose", is_flag=True, help="--local: show KFP's and the steps' own output instead of writing it "
                                              "to RUN_DIR/pipeline.log")
@_pipeline_parameter_options
@_capacity_options
@_endpoint_option
def run_pipeline(local, work_dir, project, region, pipeline_root, image, schedule, run_id, service_account, network,
                 labels, dry_run, verbose, api_endpoint, **kw):
    """Run the pipeline: locally, or on Vertex AI Pipelines (once, or on a schedule).

    The capacity flags (--spot, --reservation, --kms-key, ...) shape its training and fine-tuning
    jobs on Vertex AI; --kms-key also encrypts the pipeline run itself.
    """
    _check_run_id(run_id)
    require_extra("kfp", "pipeline")
    from launcher import capacity as capacity_lib
    from launcher import pipeline as pipeline_lib
    from launcher import pipelines_api, steps
    capacity = _capacity(kw)
    capacity_notes = capacity_lib.check(capacity, region)
    if local:
        if not work_dir:
            raise LauncherError("--local needs --work-dir", exit_code=2)
        name = run_id or time.strftime("local-%Y%m%d-%H%M%S")
        arguments = _arguments(kw, os.path.abspath(work_dir), "local", project, region, image, name)
        for key in ("source", "real_dataset", "production_dir", "finetune_dataset"):   # the steps run elsewhere
            if arguments[key] and "://" not in arguments[key]:
                arguments[key] = os.path.abspath(arguments[key])
        folder = steps.run_dir(arguments["work_dir"], name)
        click.echo("run %s: %s" % (name, folder), err=True)
        if capacity != capacity_lib.Capacity() or kw["train_timeout"]:
            click.echo("note: --timeout, --spot, --reservation, --kms-key and the other capacity flags shape Vertex "
                       "AI jobs; this run trains here", err=True)
        pipeline_lib.run_locally(os.path.join(arguments["work_dir"], "pipeline_root"), arguments, image, verbose)
        report = json.loads(open(os.path.join(folder, "promotion.json")).read())
        click.echo(_promotion_line(report))
        return
    if dry_run and not project:
        project = "PROJECT"
    if not (project and pipeline_root and pipeline_root.startswith("gs://")):
        raise LauncherError("on Vertex AI pass --project and a gs:// --pipeline-root (or --local)", exit_code=2)
    arguments = _arguments(kw, work_dir or pipeline_root.rstrip("/") + "/work", "vertex", project, region, image)
    arguments["capacity"] = capacity.to_json()
    import tempfile
    with tempfile.TemporaryDirectory() as scratch:
        spec = pipelines_api.load_spec(pipeline_lib.compile_to(os.path.join(scratch, "p.yaml"), image))
    name = run_id or time.strftime("synthdet-%Y%m%d-%H%M%S")
    job = pipelines_api.job_body(spec, name, pipeline_root, arguments, training.parse_labels(labels),
                                 service_account or "", network or "", capacity.kms_key)
    if schedule:
        body = pipelines_api.schedule_body(job, name, schedule)
        what = "POST projects/%s/locations/%s/schedules" % (project, region)
    else:
        body = job
        what = "POST projects/%s/locations/%s/pipelineJobs" % (project, region)
    if dry_run:
        click.echo("%s (not sent):" % what)
        click.echo(json.dumps(body, indent=2))
    for note in capacity_notes:         # on stderr: a dry run's stdout is the body alone, for scripts
        click.echo("not checked: %s" % note, err=True)
    for line in _pipeline_costs(arguments, capacity, region):
        click.echo(line, err=True)
    if dry_run:
        return
    api = pipelines_api.Pipelines(project, region, api_endpoint)
    if schedule:
        created = api.create_schedule(body)
        click.echo("schedule %s: %s (%s); each run writes WORK_DIR/runs/<its pipeline job name>/"
                   % (created.get("name"), schedule, created.get("state", "ACTIVE")))
        return
    created = api.create(body, run_id or name)
    click.echo("pipeline run %s: %s" % (created.get("name"), pipelines_api.state_word(created)))
    click.echo("its folder: %s" % steps.run_dir(arguments["work_dir"], created.get("name", name).rsplit("/", 1)[-1]))
    click.echo("follow it with: python -m launcher pipeline wait %s --project %s --region %s"
               % (created.get("name", "").rsplit("/", 1)[-1], project, region))


def _pipeline_costs(arguments, capacity, region):
    """The price ceiling of the Vertex jobs a pipeline run starts: its training job and, with a
    fine-tuning dataset, a second one on the same machine."""
    from launcher import capacity as capacity_lib
    from launcher import prices, vertex
    body = {"jobSpec": {"workerPoolSpecs": vertex.worker_pools(arguments["accelerator"])}}
    if arguments.get("train_timeout"):
        body["jobSpec"]["scheduling"] = {"timeout": "%ds" % training.timeout_seconds(arguments["train_timeout"])}
    capacity_lib.apply(body, capacity, 1)
    lines = ["price of its training job: " + prices.ceiling(body, region, capacity,
                                                            hint="pass --timeout to lower this ceiling").line]
    if arguments.get("finetune_steps"):
        lines.append("and of its fine-tuning job: the same again")
    lines.append("not priced here: the pipeline run's own fee, the conversion (Dataflow with --beam-arg "
                 "--runner=DataflowRunner) and the evaluation steps")
    return lines


@pipeline.command("leaderboard")
@click.option("--work-dir", required=True, help="the runs' root: every complete run under WORK_DIR/runs/ is scored")
@click.option("--production-dir", help="where production models live (default: WORK_DIR/production)")
@click.option("--dataset", default="", help="synthetic data all are scored on (default: the newest run's output)")
@click.option("--real-dataset", default="", help="real photos all are scored on (default: the ones the newest run "
                                                 "was compared on)")
@click.option("--since", default="", metavar="8w|30d|12h", help="only the runs that ended this recently")
@click.option("--metric", default="", callback=_check_metric, help="what ranks them (default: real.AP with real "
                                                                   "data, else synthetic.AP)")
@click.option("--schedule", help="Vertex AI: instead of scoring here, create a schedule of the leaderboard pipeline "
                                 "with this cron, e.g. \"0 6 14,28 * *\"")
@click.option("--project", envvar="GOOGLE_CLOUD_PROJECT", help="with --schedule: the project")
@click.option("--region", default="us-central1", show_default=True)
@click.option("--pipeline-root", help="with --schedule: gs:// folder for the runs' artifacts")
@click.option("--image", envvar="SYNTHDET_IMAGE", default="synthdet:latest", show_default=True)
@click.option("--dry-run", is_flag=True, help="with --schedule: print the request; send nothing")
@click.option("--verbose", is_flag=True, help="show TensorFlow's output instead of writing it to the leaderboard's "
                                              "leaderboard.log")
@_endpoint_option
def pipeline_leaderboard(work_dir, production_dir, dataset, real_dataset, since, metric, schedule, project, region,
                         pipeline_root, image, dry_run, verbose, api_endpoint):
    """Score the best checkpoint of every complete candidate and the production model on the same
    data, and rank them with intervals: WORK_DIR/leaderboards/<date>/leaderboard.json and
    report.html. A model already scored on the same data is not scored again."""
    from launcher import leaderboard as leaderboard_lib
    try:
        leaderboard_lib.since_seconds(since)
    except ValueError as error:
        raise UsageError(str(error))
    production_dir = production_dir or work_dir.rstrip("/") + "/production"
    arguments = {"work_dir": work_dir, "production_dir": production_dir, "dataset": dataset,
                 "real_dataset": real_dataset, "since": since, "metric": metric}
    if schedule:
        _schedule_leaderboard(arguments, schedule, project, region, pipeline_root, image, dry_run, api_endpoint)
        return
    require_extra("tensorflow", "train")
    from launcher import steps
    from tfproc import console
    for key in ("work_dir", "production_dir", "dataset", "real_dataset"):
        if arguments[key] and "://" not in arguments[key]:
            arguments[key] = os.path.abspath(arguments[key])
    today = time.strftime("%Y-%m-%d")
    folder = arguments["work_dir"].rstrip("/") + "/" + leaderboard_lib.FOLDER + "/" + today
    click.echo("leaderboard of %s: %s" % (arguments["work_dir"], folder), err=True)
    try:
        with console.quiet(verbose):
            if not verbose:
                console.keep_log_at(folder + "/leaderboard.log")
            board = leaderboard_lib.build(**arguments, today=today)
    except steps.StepFailed as error:
        raise LauncherError(str(error))
    for entry in board["entries"]:
        vs = entry["vs_production"]
        click.echo("%d. %-24s %-10s %s %.4f %s%s" % (
            entry["rank"], entry["run"], entry["kind"], board["metric"], entry["value"],
            "[%.4f, %.4f]" % tuple(entry["ci95"]) if entry["ci95"] else "[no interval]",
            "  %+.4f against production: %s" % (vs["difference"], vs["verdict"]) if vs else ""))
    if board["resamples_left_out"]:
        click.echo("%d of %d resamples held no ground-truth box and were left out of the intervals"
                   % (board["resamples_left_out"], board["resamples"] + board["resamples_left_out"]))
    click.echo("leaderboard: %s/leaderboard.json and report.html" % board["folder"])


def _schedule_leaderboard(arguments, schedule, project, region, pipeline_root, image, dry_run, api_endpoint):
    require_extra("kfp", "pipeline")
    import tempfile

    from launcher import pipeline as pipeline_lib
    from launcher import pipelines_api
    if dry_run and not project:
        project = "PROJECT"
    if not (project and pipeline_root and pipeline_root.startswith("gs://")):
        raise UsageError("--schedule needs --project and a gs:// --pipeline-root")
    if not arguments["work_dir"].startswith("gs://"):
        raise UsageError("--schedule needs a gs:// --work-dir: the scheduled runs read it on Vertex AI")
    with tempfile.TemporaryDirectory() as scratch:
        spec = pipelines_api.load_spec(pipeline_lib.compile_leaderboard_to(os.path.join(scratch, "l.yaml"), image))
    job = pipelines_api.job_body(spec, pipeline_lib.LEADERBOARD, pipeline_root, arguments)
    body = pipelines_api.schedule_body(job, pipeline_lib.LEADERBOARD, schedule)
    if dry_run:
        click.echo("POST projects/%s/locations/%s/schedules (not sent):" % (project, region))
        click.echo(json.dumps(body, indent=2))
        return
    created = pipelines_api.Pipelines(project, region, api_endpoint).create_schedule(body)
    click.echo("schedule %s: %s (%s); each run writes WORK_DIR/leaderboards/<date>/"
               % (created.get("name"), schedule, created.get("state", "ACTIVE")))


_PIPELINE_JOB_ID = re.compile(r"^[a-z][-a-z0-9]{0,127}\Z")


def _check_run_id(run_id):
    """Vertex AI's rule for a pipelineJobId: ^[a-z][-a-z0-9]{0,127}$."""
    if run_id is not None and not _PIPELINE_JOB_ID.match(run_id):
        suggestion = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")
        suggestion = (suggestion if suggestion[:1].isalpha() else ("run-" + suggestion).rstrip("-"))[:128]
        raise UsageError("--run-id %r is not a valid pipeline run id: start with a lower-case letter, then at most 127 "
                         "lower-case letters, digits and hyphens (Vertex AI's rule ^[a-z][-a-z0-9]{0,127}$), e.g. %r"
                         % (run_id, suggestion))


def require_extra(module, extra):
    """One line, exit 2, when an optional part of the project is not installed."""
    import importlib
    try:
        importlib.import_module(module)
    except ImportError:
        raise UsageError('this needs the "%s" extra (%s is not installed): pip install -e ".[%s]"'
                         % (extra, module, extra))


def _promotion_line(report):
    if report["promoted"]:
        return "promoted the candidate to %s (%s)" % (report["production_dir"], report["reason"])
    verdict = report.get("verdict") or ("better" if report["better"] else "not better")
    return "the candidate is %s (%s); to promote it: %s" % (verdict, report["reason"], report["promote_command"])


def _vertex_pipeline_options(command):
    command = _endpoint_option(command)
    command = click.option("--region", default="us-central1", show_default=True)(command)
    command = _project_option(command)
    return command


@pipeline.command("status")
@click.argument("run")
@_vertex_pipeline_options
def pipeline_status(run, project, region, api_endpoint):
    """Show a Vertex AI pipeline run (its id or full name)."""
    from launcher import pipelines_api
    job = pipelines_api.Pipelines(project, region, api_endpoint).get(run)
    click.echo(_describe_run(job))


def _describe_run(job):
    from launcher import pipelines_api
    lines = ["pipeline run %s: %s" % (job.get("name", "").rsplit("/", 1)[-1], pipelines_api.state_word(job))]
    for key in ("createTime", "startTime", "endTime"):
        if job.get(key):
            lines.append("  %s: %s" % (key, job[key]))
    for task, message in pipelines_api.failed_tasks(job):
        lines.append("  failed step: %s%s" % (task, ": " + message if message else ""))
    if (job.get("error") or {}).get("message"):
        lines.append("  error: %s" % job["error"]["message"])
    return "\n".join(lines)


@pipeline.command("wait")
@click.argument("run")
@_vertex_pipeline_options
@click.option("--interval", default=60.0, show_default=True, type=float)
def pipeline_wait(run, project, region, api_endpoint, interval):
    """Poll a pipeline run until it ends; exit 0 only if it SUCCEEDED."""
    from launcher import pipelines_api
    api, last = pipelines_api.Pipelines(project, region, api_endpoint), None
    while True:
        job = api.get(run)
        state = pipelines_api.state_word(job)
        if state != last:
            click.echo("pipeline run %s: %s" % (run, state), err=True)
            last = state
        if state in training.TERMINAL:
            break
        time.sleep(interval)
    click.echo(_describe_run(job))
    if state != "SUCCEEDED":
        failed = pipelines_api.failed_tasks(job)
        raise LauncherError("pipeline run %s ended %s%s" % (run, state, " at its %s step" % failed[0][0] if failed else ""))


@pipeline.command("cancel")
@click.argument("run")
@_vertex_pipeline_options
def pipeline_cancel(run, project, region, api_endpoint):
    """Cancel a pipeline run (its train step cancels the Vertex job it started)."""
    from launcher import pipelines_api
    pipelines_api.Pipelines(project, region, api_endpoint).cancel(run)
    click.echo("cancel requested for pipeline run %s" % run)


@pipeline.command("list")
@_vertex_pipeline_options
@click.option("--limit", default=20, show_default=True, type=int)
def pipeline_list(project, region, api_endpoint, limit):
    """List recent pipeline runs."""
    from launcher import pipelines_api
    for job in pipelines_api.Pipelines(project, region, api_endpoint).list(limit):
        click.echo("%-40s %-10s %s" % (job.get("name", "").rsplit("/", 1)[-1], pipelines_api.state_word(job),
                                       job.get("createTime", "")))


@pipeline.command("schedules")
@_vertex_pipeline_options
@click.option("--pause", metavar="ID", help="pause this schedule")
@click.option("--delete", metavar="ID", help="delete this schedule")
def pipeline_schedules(project, region, api_endpoint, pause, delete):
    """List the pipeline's schedules; or pause or delete one."""
    from launcher import pipelines_api
    api = pipelines_api.Pipelines(project, region, api_endpoint)
    if pause:
        api.pause_schedule(pause)
        click.echo("paused schedule %s" % pause)
    elif delete:
        api.delete_schedule(delete)
        click.echo("deleted schedule %s" % delete)
    else:
        for item in api.list_schedules():
            click.echo("%-40s %-8s %-16s next %s" % (item.get("name", "").rsplit("/", 1)[-1], item.get("state"),
                                                    item.get("cron"), item.get("nextRunTime", "-")))


@pipeline.command("promote")
@click.option("--candidate", help="the candidate model dir (a run's WORK_DIR/runs/RUN/candidate)")
@click.option("--production", required=True, help="the production folder")
@click.option("--run", "run_name", help="the version's name (default: the run folder's name)")
@click.option("--rollback", is_flag=True, help="point production back to the previous model")
def pipeline_promote(candidate, production, run_name, rollback):
    """Promote a candidate by hand (the command a manual pipeline's report names), or roll back."""
    from launcher import production as production_lib
    from tfproc.output import OutputBusy
    try:
        if rollback:
            pointer = production_lib.rollback(production)
            click.echo("production is %s again (%s); the model rolled back from stays in %s/models"
                       % (pointer["current"]["name"], pointer["current"]["model"], production.rstrip("/")))
            return
        if not candidate:
            raise LauncherError("pass --candidate (or --rollback)", exit_code=2)
        name = run_name or production_lib.default_version_name(candidate)
        pointer, changed = production_lib.promote(candidate, production, name)
    except production_lib.PromotionError as error:
        raise LauncherError(str(error))
    except OutputBusy as error:
        raise LauncherError(str(error))
    if not changed:
        click.echo("%s is production already; nothing changed" % candidate)
        return
    click.echo("promoted %s to %s (version %s; the previous model: %s)" % (
        candidate, pointer["current"]["model"], pointer["current"]["name"],
        (pointer.get("previous") or {}).get("model", "none")))
