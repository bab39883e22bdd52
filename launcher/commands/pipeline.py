"""The ``pipeline`` group: ``compile`` the KFP spec and ``run`` it (here, or on Vertex AI Pipelines
once or on a schedule); its runs on Vertex (``pipeline_runs``) and the decision (``decide``) add
their commands to it."""
import json
import os
import re
import sys
import time

import click

from launcher.commands import decide, pipeline_runs
from launcher.commands.common import (capacity_from, capacity_options, check_metric, check_timeout, endpoint_option,
                                      require_extra)
from launcher.errors import LauncherError, StepFailed, UsageError
from launcher.jobs import jobspec, training


@click.group()
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


def _check_eval_pct(ctx, param, value):
    """The pipeline evaluates the candidate on the eval split and trains it on the rest: both need images."""
    if value in (0, 100):
        raise click.BadParameter("takes a share above 0 and below 100 (the candidate is trained on the train split "
                                 "and evaluated on the eval split, so both need images), got %g" % value)
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
        click.option("--real-split", default="", metavar="NAME",
                     help="the split of --real-dataset that decides (default: eval, else test); every test_* subset "
                          "it holds is scored too (UnityGroceries-Real's test_low_contrast, ...)"),
        click.option("--finetune-split", default="", metavar="NAME",
                     help="the split of --finetune-dataset to fine-tune on (default train; e.g. train_small or "
                          "train_medium, seed 002's 76 and 380 photos)"),
        click.option("--finetune-steps", default=2000, show_default=True, type=click.IntRange(min=1),
                     help="steps of the fine-tuning"),
        click.option("--production-dir", default="", help="where production models live (default: WORK_DIR/production)"),
        click.option("--promote", "promote_mode", type=click.Choice(["manual", "auto"]), default="manual", show_default=True,
                     help="manual: a report and the command that promotes; auto: promote a better candidate"),
        click.option("--min-improvement", default=0.0, show_default=True, type=click.FloatRange(min=0),
                     help="the verdict is better only when the whole 95% interval of the difference lies above "
                          "this (e.g. 0.01 for one AP point)"),
        click.option("--metric", default="", callback=check_metric, help="what decides, e.g. real.AP (default: real.AP with --real-dataset, else synthetic.AP)"),
        click.option("--backbone", default="resnet-50", show_default=True,
                     type=click.Choice(["resnet-50", "resnet-18", "mobilenet"])),
        click.option("--model-size", default="full", show_default=True, type=click.Choice(["full", "small"]),
                     help="the trainer's --model-size (small: a thin MobileNetV2 detector that trains in minutes on "
                          "a CPU; needs --backbone mobilenet --fpn-type fpn)"),
        click.option("--init-from", default="", type=click.Choice(["", "production"]), metavar="production",
                     help="production: start the candidate from the current production model's whole network "
                          "(seed 004); with none yet, from --init-checkpoint"),
        click.option("--init-checkpoint", default="", help="where the backbone starts (default: imagenet on Vertex "
                                                           "for resnet-50, none locally)"),
        click.option("--params-override", default="", help="for the trainer (YAML or JSON)"),
        click.option("--beam-arg", "beam_args", multiple=True, help="an option for main.py / Beam, e.g. --runner=DataflowRunner (repeatable)"),
        click.option("--accelerator", default="gpu", show_default=True, type=click.Choice(["gpu", "a100", "cpu"]),
                     help="Vertex training machines"),
        click.option("--timeout", "train_timeout", default="", callback=check_timeout, metavar="DURATION",
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
                                       "model_size", "params_override", "accelerator", "image_size", "promote_mode",
                                       "init_checkpoint", "min_improvement", "init_from", "train_timeout",
                                       "real_split", "finetune_split")}
    values.update({name: kw[name] for name in jobspec.HYPERPARAMETERS if name != "image_size"})
    values.update(work_dir=work_dir.rstrip("/"), backend=backend, project=project or "", region=region,
                  production_dir=(kw["production_dir"] or work_dir.rstrip("/") + "/production"),
                  beam_args=json.dumps(list(kw["beam_args"])), image=image, run_name=run_name,
                  finetune_steps=kw["finetune_steps"] if kw["finetune_dataset"] else 0)
    if not values["source"] and not (values["run_execution_id"] and values["bucket"]):
        raise LauncherError("pass --source, or --run-definition-id, --run-execution-id and --bucket", exit_code=2)
    _check_splits(values)
    from trainer import config as trainer_config
    try:
        trainer_config.check_model_size(values["model_size"], values["backbone"], values["fpn_type"])
    except trainer_config.ConfigError as error:
        raise UsageError(str(error))
    if values["params_override"]:
        try:
            parsed = trainer_config.parse_override(values["params_override"])
            trainer_config.check_overrides([parsed])
            values["params_override"] = json.dumps(parsed)
        except trainer_config.ConfigError as error:
            raise LauncherError(str(error), exit_code=2)
    return values


def _check_splits(values):
    """--real-split and --finetune-split name a split of their dataset (checked where it is local)."""
    from launcher.decide import scores
    for split, dataset, option, needs in (("real_split", "real_dataset", "--real-split", "--real-dataset"),
                                          ("finetune_split", "finetune_dataset", "--finetune-split",
                                           "--finetune-dataset")):
        if not values[split]:
            continue
        if not values[dataset]:
            raise UsageError("%s needs %s, the conversion output it is a split of" % (option, needs))
        if "://" not in values[dataset]:
            try:
                scores.check_split(values[dataset], values[split], option)
            except StepFailed as error:
                raise UsageError(str(error))


@click.command("compile")
@click.option("--output", default="synthdet_pipeline.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--image", default="synthdet:latest", show_default=True, help="the project's image the components run in")
def compile_pipeline(output, image):
    """Write the KFP v2 pipeline spec (YAML), to upload to any Kubeflow Pipelines or Vertex AI Pipelines."""
    require_extra("kfp", "pipeline")
    from launcher.pipeline import definition
    definition.compile_to(output, image)
    click.echo("pipeline spec: %s (steps: %s; image %s)" % (output, ", ".join(definition.STEPS), image))


@click.command("run")
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
@click.option("--service-account", help="Vertex AI: the account the pipeline and its training jobs run as")
@click.option("--network", help="Vertex AI: a peered VPC network for the pipeline and its training jobs, "
                                "projects/NUMBER/global/networks/NAME")
@click.option("--labels", "labels", multiple=True, metavar="KEY=VALUE", help="Vertex AI: labels of the run or schedule")
@click.option("--dry-run", is_flag=True, help="print the request; send nothing (no account needed)")
@click.option("--verbose", is_flag=True, help="--local: show KFP's and the steps' own output instead of writing it "
                                              "to RUN_DIR/pipeline.log")
@_pipeline_parameter_options
@capacity_options
@endpoint_option
def run_pipeline(local, work_dir, project, region, pipeline_root, image, schedule, run_id, service_account, network,
                 labels, dry_run, verbose, api_endpoint, **kw):
    """Run the pipeline: locally, or on Vertex AI Pipelines (once, or on a schedule).

    The capacity flags (--spot, --reservation, --kms-key, ...) shape its training and fine-tuning
    jobs on Vertex AI; --kms-key also encrypts the pipeline run itself.
    """
    _check_run_id(run_id)
    require_extra("kfp", "pipeline")
    from launcher.cloud import pipelines_api
    from launcher.jobs import capacity as capacity_lib
    from launcher.jobs import vertex_plan, vertex_spec
    from launcher.pipeline import definition, local_run, runs
    capacity = capacity_from(kw)
    capacity_notes = capacity_lib.check(capacity, region)
    vertex_plan.check_identity(service_account, network)
    if local:
        if not work_dir:
            raise LauncherError("--local needs --work-dir", exit_code=2)
        name = run_id or time.strftime("local-%Y%m%d-%H%M%S")
        arguments = _arguments(kw, os.path.abspath(work_dir), "local", project, region, image, name)
        for key in ("source", "real_dataset", "production_dir", "finetune_dataset"):   # the steps run elsewhere
            if arguments[key] and "://" not in arguments[key]:
                arguments[key] = os.path.abspath(arguments[key])
        folder = runs.run_dir(arguments["work_dir"], name)
        try:
            runs.keep_settings(folder, arguments)
        except StepFailed as error:
            raise UsageError(str(error))
        click.echo("run %s: %s" % (name, folder), err=True)
        if capacity != capacity_lib.Capacity() or kw["train_timeout"]:
            click.echo("note: --timeout, --spot, --reservation, --kms-key and the other capacity flags shape Vertex "
                       "AI jobs; this run trains here", err=True)
        try:
            local_run.run_locally(os.path.join(arguments["work_dir"], "pipeline_root"), arguments, image, verbose)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: the running step was ended and recorded as interrupted; the same command "
                       "resumes run %s" % name, err=True)
            sys.exit(130)
        report = json.loads(open(os.path.join(folder, "promotion.json")).read())
        click.echo(_promotion_line(report))
        return
    if dry_run and not project:
        project = "PROJECT"
    if not (project and pipeline_root and pipeline_root.startswith("gs://")):
        raise LauncherError("on Vertex AI pass --project and a gs:// --pipeline-root (or --local)", exit_code=2)
    capacity_lib.check_machines(capacity, vertex_spec.worker_pools(kw["accelerator"]),
                                training.timeout_seconds(kw["train_timeout"]) if kw["train_timeout"] else None)
    arguments = _arguments(kw, work_dir or pipeline_root.rstrip("/") + "/work", "vertex", project, region, image)
    arguments.update(capacity=capacity.to_json(), service_account=service_account or "", network=network or "")
    import tempfile
    with tempfile.TemporaryDirectory() as scratch:
        spec = pipelines_api.load_spec(definition.compile_to(os.path.join(scratch, "p.yaml"), image))
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
    click.echo("its folder: %s" % runs.run_dir(arguments["work_dir"], created.get("name", name).rsplit("/", 1)[-1]))
    click.echo("follow it with: python -m launcher pipeline wait %s --project %s --region %s"
               % (created.get("name", "").rsplit("/", 1)[-1], project, region))


def _pipeline_costs(arguments, capacity, region):
    """The price ceiling of the Vertex jobs a pipeline run starts: its training job and, with a
    fine-tuning dataset, a second one on the same machine."""
    from launcher.jobs import capacity as capacity_lib
    from launcher.jobs import prices, vertex_spec
    body = {"jobSpec": {"workerPoolSpecs": vertex_spec.worker_pools(arguments["accelerator"])}}
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


_PIPELINE_JOB_ID = re.compile(r"^[a-z][-a-z0-9]{0,127}\Z")


def _check_run_id(run_id):
    """Vertex AI's rule for a pipelineJobId: ^[a-z][-a-z0-9]{0,127}$."""
    if run_id is not None and not _PIPELINE_JOB_ID.match(run_id):
        suggestion = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")
        suggestion = (suggestion if suggestion[:1].isalpha() else ("run-" + suggestion).rstrip("-"))[:128]
        raise UsageError("--run-id %r is not a valid pipeline run id: start with a lower-case letter, then at most 127 "
                         "lower-case letters, digits and hyphens (Vertex AI's rule ^[a-z][-a-z0-9]{0,127}$), e.g. %r"
                         % (run_id, suggestion))


def _promotion_line(report):
    if report["promoted"]:
        return "promoted the candidate to %s (%s)" % (report["production_dir"], report["reason"])
    verdict = report.get("verdict") or ("better" if report["better"] else "not better")
    return "the candidate is %s (%s); to promote it: %s" % (verdict, report["reason"], report["promote_command"])


for command in (compile_pipeline, run_pipeline, decide.pipeline_leaderboard, decide.pipeline_promote,
                pipeline_runs.pipeline_status, pipeline_runs.pipeline_wait, pipeline_runs.pipeline_cancel,
                pipeline_runs.pipeline_list, pipeline_runs.pipeline_schedules):
    pipeline.add_command(command)
