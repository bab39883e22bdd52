"""What the commands share: the options of a job's backend, project and endpoint, the capacity
flags, the seed's hyperparameters, the checks click runs on a value, and the extras a command needs."""
import click

from launcher.errors import UsageError
from launcher.jobs import backends
from launcher.jobs import capacity as capacity_lib
from launcher.jobs import jobspec, training


def project_option(command):
    return click.option("--project", envvar="GOOGLE_CLOUD_PROJECT",
                        help="Google Cloud project (default: GOOGLE_CLOUD_PROJECT; not needed with --backend local "
                             "or --dry-run)")(command)


def endpoint_option(command):
    return click.option("--api-endpoint", help="the jobs API's endpoint (default: CLOUDSDK_API_ENDPOINT_OVERRIDES_"
                                               "AIPLATFORM or _ML, else Google's)")(command)


def backend_options(command):
    command = click.option("--region", default="us-central1", show_default=True, help="the jobs' region")(command)
    command = click.option("--backend", type=click.Choice(backends.BACKENDS), default="vertex", show_default=True,
                           help="vertex: Vertex AI custom jobs; local: the same job body run on this machine, each "
                                "replica a process, as Vertex runs it; ml: AI Platform Training (ml v1, shut down "
                                "by Google on 2025-01-31)")(command)
    return command


def not_empty(ctx, param, value):
    """An option given an empty value (an unset shell variable) is refused, not dropped."""
    if value is not None and not value.strip():
        raise click.BadParameter("is empty (an unset shell variable?): give it a value, or leave the option out")
    return value


def capacity_options(command):
    """How a Vertex job gets its machines (aiplatform v1 Scheduling, DiskSpec, reservations, CMEK)."""
    options = [
        click.option("--spot", is_flag=True, help="vertex: Spot VMs (scheduling.strategy SPOT): cheaper, may be "
                                                  "preempted; the trainer resumes from its newest checkpoint"),
        click.option("--flex-start", is_flag=True, help="vertex: wait for scarce GPUs with Dynamic Workload Scheduler "
                                                        "(scheduling.strategy FLEX_START)"),
        click.option("--max-wait", callback=not_empty, metavar="DURATION",
                     help="with --flex-start: how long to wait for the machines, "
                          "e.g. 2h (0: no end; Vertex's default: 24 h)"),
        click.option("--restart-on-worker-restart/--no-restart-on-worker-restart", default=None,
                     help="vertex: restart the whole job when one worker restarts (default: on with more than one "
                          "replica, which multi-worker training needs)"),
        click.option("--disable-retries", is_flag=True, help="vertex: do not retry the job after internal errors"),
        click.option("--boot-disk-size-gb", type=int, help="vertex: every machine's boot disk (Vertex's default: 100)"),
        click.option("--boot-disk-type", type=click.Choice(["pd-ssd", "pd-standard", "hyperdisk-balanced"]),
                     help="vertex: every machine's boot disk type (Vertex's default: pd-ssd)"),
        click.option("--reservation", callback=not_empty, metavar="projects/P/zones/Z/reservations/R",
                     help="vertex: take the machines from this Compute Engine reservation"),
        click.option("--persistent-resource", callback=not_empty, metavar="ID",
                     help="vertex: run on this persistent resource's machines"),
        click.option("--kms-key", callback=not_empty, metavar="projects/P/locations/L/keyRings/K/cryptoKeys/C",
                     help="vertex: the customer-managed key that encrypts the job (same region as the job)"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def capacity_from(options):
    """The capacity flags, taken out of a command's keyword arguments."""
    return capacity_lib.Capacity(
        spot=options.pop("spot"), flex_start=options.pop("flex_start"), max_wait=options.pop("max_wait") or "",
        restart_on_worker_restart=options.pop("restart_on_worker_restart"),
        disable_retries=options.pop("disable_retries"), boot_disk_size_gb=options.pop("boot_disk_size_gb"),
        boot_disk_type=options.pop("boot_disk_type") or "", reservation=options.pop("reservation") or "",
        persistent_resource=options.pop("persistent_resource") or "", kms_key=options.pop("kms_key") or "")


def hyperparameter_options(command):
    for name, default in reversed(list(jobspec.HYPERPARAMETERS.items())):
        help_text = "the seed's --%s (default: %s)" % (name, default)
        if name == "image_size":
            help_text = "height,width (default: vertex: the dataset's most common resolution; ml: %s)" % default
        elif name == "num_eval_images":
            help_text = "default: 200, or all the validation images if fewer"
        command = click.option("--" + name.replace("_", "-"), name, default=None, type=type(default),
                               help=help_text)(command)
    return command


def backend_for(backend, project, region, api_endpoint, logging_endpoint=None, dry_run=False):
    if not project and backend != "local":
        if not dry_run:
            raise UsageError("pass --project (or set GOOGLE_CLOUD_PROJECT); --backend local needs none")
        project = "PROJECT"
    return backends.backend(backend, project, region, api_endpoint, logging_endpoint)


def check_metric(ctx, param, value):
    """``synthetic.AP``, ``real.AP50``, ...: a split and a COCO metric."""
    from trainer import cocoap
    where, _, key = (value or "").partition(".")
    if value and (where not in ("synthetic", "real") or key not in cocoap.SUPPORTED):
        raise click.BadParameter("takes synthetic.KEY or real.KEY with KEY one of %s (the metrics the paired "
                                 "bootstrap puts an interval on), got %r" % (", ".join(cocoap.SUPPORTED), value))
    return value


def check_timeout(ctx, param, value):
    if value:
        try:
            training.timeout_seconds(value)
        except UsageError as error:
            raise click.BadParameter(str(error).replace("--timeout ", "", 1))
    return value


def require_extra(module, extra):
    """One line, exit 2, when an optional part of the project is not installed (found, not imported:
    TensorFlow takes seconds to import, and the command may end sooner)."""
    import importlib.util
    try:
        missing = importlib.util.find_spec(module) is None
    except ValueError:          # sys.modules[module] is None: blocked
        missing = True
    if missing:
        raise UsageError('this needs the "%s" extra (%s is not installed): bash scripts/install.sh %s (into '
                         '.venv; run the commands with .venv/bin/python)' % (extra, module, extra))
