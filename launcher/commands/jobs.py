"""The training job commands: ``train`` (Vertex AI, this machine, or legacy AI Platform), and
``status``, ``wait``, ``logs``, ``cancel`` and ``list`` to follow jobs."""
import json
import time

import click

from launcher.cloud import cloudlogging
from launcher.commands.common import (backend_for, backend_options, capacity_from, capacity_options, endpoint_option,
                                      hyperparameter_options, project_option)
from launcher.errors import LauncherError
from launcher.jobs import jobspec, training

DEPRECATION = ("Note: Google shut down legacy AI Platform Training (the ml v1 API) on 2025-01-31; "
               "train on its successor, Vertex AI (--backend vertex, the default). Use --api-endpoint or "
               "CLOUDSDK_API_ENDPOINT_OVERRIDES_ML for an endpoint that still serves ml v1.")


@click.command()
@project_option
@click.option("--dataset", help="a conversion output folder (gs://.../output): data patterns, "
                                "num_classes and validation images come from its summary.json")
@click.option("--job-dir", required=True, help="gs:// folder for the model and checkpoints")
@click.option("--job-id", help="the job's name; a retry with the same id never starts a second job "
                               "(default: synthdet_<yyyymmdd_HHMMSS>)")
@backend_options
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
@click.option("--train-split", metavar="NAME", help="vertex, local: the split trained on (default train; e.g. "
                                                   "train_small of the published UnityGroceries-Real)")
@click.option("--eval-split", metavar="NAME", help="vertex, local: the split evaluated on (default eval, else val)")
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
@hyperparameter_options
@click.option("--arg", "extra_args", multiple=True, metavar="NAME=VALUE",
              help="ml: any other algorithm argument, e.g. --arg learning_rate_decay_type=cosine (repeatable)")
@click.option("--resume", is_flag=True, help="allow a job dir that holds files: the job resumes from its checkpoints")
@capacity_options
@click.option("--step-time-from", metavar="MODEL_DIR", help="vertex, local: a finished run's model dir; its measured "
                                                            "step time gives the expected cost of --max-steps "
                                                            "(default with --resume: the job dir)")
@click.option("--dry-run", is_flag=True, help="print the request, the gcloud command and the price ceiling; send "
                                              "nothing")
@endpoint_option
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
        labels=training.parse_labels(labels), gpus=int(gpus), capacity=capacity_from(options),
        **{k: (v if v is not None else "") if k not in ("num_classes",) else v for k, v in options.items()})
    jobs = backend_for(backend, project, region, api_endpoint, dry_run=dry_run)
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
    from launcher.cloud import google_api
    if not request.job_dir.startswith("gs://") and jobs.name != "local":
        return
    if request.job_dir.startswith("gs://") and not google_api.has_credentials():
        plan.unchecked.append("no Google credentials: whether %s already holds files was not checked" % request.job_dir)
        return
    jobs.check_job_dir(request)


@click.command()
@click.argument("job_id")
@project_option
@backend_options
@endpoint_option
def status(job_id, project, backend, region, api_endpoint):
    """Show a job's state, times and error. JOB: the job id (vertex: its numeric id, its full
    resource name, or the --job-id name it was submitted with)."""
    click.echo(backend_for(backend, project, region, api_endpoint).get(job_id).describe())


@click.command()
@click.argument("job_id")
@project_option
@backend_options
@click.option("--interval", default=60.0, show_default=True, type=float, help="seconds between polls")
@endpoint_option
def wait(job_id, project, backend, region, interval, api_endpoint):
    """Poll until the job ends; exit 0 only if it SUCCEEDED."""
    began = time.monotonic()
    job = backend_for(backend, project, region, api_endpoint).wait(job_id, interval, on_state=lambda j: click.echo(
        "[%5.0fs] job %s: %s" % (time.monotonic() - began, job_id, j.state), err=True))
    click.echo(job.describe())
    if job.state != "SUCCEEDED":
        raise LauncherError("job %s ended %s%s" % (job_id, job.state, ": " + job.error if job.error else ""))


@click.command()
@click.argument("job_id")
@project_option
@backend_options
@click.option("--follow", is_flag=True, help="keep printing new entries until the job ends")
@click.option("--interval", default=15.0, show_default=True, type=float, help="seconds between polls with --follow")
@click.option("--logging-endpoint", help="Cloud Logging endpoint (default: CLOUDSDK_API_ENDPOINT_OVERRIDES_LOGGING or Google's)")
@endpoint_option
def logs(job_id, project, backend, region, follow, interval, logging_endpoint, api_endpoint):
    """Print the job's log entries from Cloud Logging."""
    jobs = backend_for(backend, project, region, api_endpoint, logging_endpoint)
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


@click.command()
@click.argument("job_id")
@project_option
@backend_options
@endpoint_option
def cancel(job_id, project, backend, region, api_endpoint):
    """Cancel a job."""
    backend_for(backend, project, region, api_endpoint).cancel(job_id)
    click.echo("cancel requested for job %s" % job_id)


@click.command("list")
@project_option
@backend_options
@click.option("--limit", default=20, show_default=True, type=int)
@endpoint_option
def list_jobs(project, backend, region, limit, api_endpoint):
    """List the project's most recent jobs."""
    for job in backend_for(backend, project, region, api_endpoint).list(limit):
        click.echo("%-40s %-10s %s" % (job.title(), job.state, job.create_time))
