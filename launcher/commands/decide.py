"""The decision by hand: ``pipeline leaderboard`` ranks every complete candidate and production on
the same data (here, or on a schedule), and ``pipeline promote`` promotes a candidate or rolls back."""
import json
import os
import time

import click

from launcher.commands.common import check_metric, endpoint_option, require_extra
from launcher.errors import LauncherError, StepFailed, UsageError


@click.command("leaderboard")
@click.option("--work-dir", required=True, help="the runs' root: every complete run under WORK_DIR/runs/ is scored")
@click.option("--production-dir", help="where production models live (default: WORK_DIR/production)")
@click.option("--dataset", default="", help="synthetic data all are scored on (default: the newest run's output)")
@click.option("--real-dataset", default="", help="real photos all are scored on (default: the ones the newest run "
                                                 "was compared on)")
@click.option("--real-split", default="", metavar="NAME", help="the split of the real data that ranks them (default: "
                                                              "eval, else test); each test_* subset gets a column")
@click.option("--model", "models", multiple=True, metavar="NAME=MODEL_DIR",
              help="a model trained by hand (python -m trainer train) to rank beside the runs (repeatable)")
@click.option("--since", default="", metavar="8w|30d|12h", help="only the runs that ended this recently")
@click.option("--metric", default="", callback=check_metric, help="what ranks them (default: real.AP with real "
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
@endpoint_option
def pipeline_leaderboard(work_dir, production_dir, dataset, real_dataset, real_split, models, since, metric, schedule,
                         project, region, pipeline_root, image, dry_run, verbose, api_endpoint):
    """Score the best checkpoint of every complete candidate and the production model on the same
    data, and rank them with intervals: WORK_DIR/leaderboards/<date>/leaderboard.json and
    report.html. A model already scored on the same data is not scored again."""
    from launcher.decide import leaderboard as leaderboard_lib
    try:
        leaderboard_lib.since_seconds(since)
    except ValueError as error:
        raise UsageError(str(error))
    production_dir = production_dir or work_dir.rstrip("/") + "/production"
    arguments = {"work_dir": work_dir, "production_dir": production_dir, "dataset": dataset,
                 "real_dataset": real_dataset, "since": since, "metric": metric, "real_split": real_split}
    if real_split and real_dataset and "://" not in real_dataset:
        from launcher.decide import scores
        try:
            scores.check_split(real_dataset, real_split, "--real-split")
        except StepFailed as error:
            raise UsageError(str(error))
    named = _named_models(models)
    if schedule:
        if named:
            raise UsageError("--model ranks models trained by hand here; a --schedule ranks the pipeline's runs")
        _schedule_leaderboard(arguments, schedule, project, region, pipeline_root, image, dry_run, api_endpoint)
        return
    arguments["models"] = named
    require_extra("tensorflow", "train")
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
    except StepFailed as error:
        raise LauncherError(str(error))
    for entry in board["entries"]:
        vs = entry["vs_production"]
        click.echo("%d. %-24s %-10s %s %.4f %s%s" % (
            entry["rank"], entry["run"], entry["kind"], board["metric"], entry["value"],
            "[%.4f, %.4f]" % tuple(entry["ci95"]) if entry["ci95"] else "[no interval]",
            "  %+.4f against production: %s" % (vs["difference"], vs["verdict"]) if vs else ""))
        if board["subsets"]:
            click.echo("   %s" % ", ".join("%s %.4f" % (s, entry["subsets"][s]["value"]) for s in board["subsets"]))
    for skipped in board["skipped"]:
        click.echo("left out %s: %s" % (skipped["run"], skipped["why"]))
    if board["classes_left_out"]:
        click.echo("ranked on the classes every model knows: %s left out (some models were not trained on it)"
                   % ", ".join(board["classes_left_out"]))
    if board["resamples_left_out"]:
        click.echo("%d of %d resamples held no ground-truth box and were left out of the intervals"
                   % (board["resamples_left_out"], board["resamples"] + board["resamples_left_out"]))
    click.echo("leaderboard: %s/leaderboard.json and report.html" % board["folder"])


def _named_models(models):
    """``[(name, model dir)]`` of the --model NAME=MODEL_DIR values, each checked."""
    named = []
    for value in models:
        name, sep, model_dir = value.partition("=")
        name, model_dir = name.strip(), model_dir.strip()
        if not sep or not name or not model_dir:
            raise UsageError("--model takes NAME=MODEL_DIR (e.g. synthetic=models/synthetic), got %r" % value)
        if name in [n for n, _ in named]:
            raise UsageError("--model %s is given twice; give each model a name of its own" % name)
        if "://" not in model_dir:
            if not os.path.isdir(model_dir):
                raise UsageError("--model %s: %s is not a folder" % (name, model_dir))
            model_dir = os.path.abspath(model_dir)
        named.append((name, model_dir))
    return named


def _schedule_leaderboard(arguments, schedule, project, region, pipeline_root, image, dry_run, api_endpoint):
    require_extra("kfp", "pipeline")
    import tempfile

    from launcher.cloud import pipelines_api
    from launcher.pipeline import definition
    if dry_run and not project:
        project = "PROJECT"
    if not (project and pipeline_root and pipeline_root.startswith("gs://")):
        raise UsageError("--schedule needs --project and a gs:// --pipeline-root")
    if not arguments["work_dir"].startswith("gs://"):
        raise UsageError("--schedule needs a gs:// --work-dir: the scheduled runs read it on Vertex AI")
    with tempfile.TemporaryDirectory() as scratch:
        spec = pipelines_api.load_spec(definition.compile_leaderboard_to(os.path.join(scratch, "l.yaml"), image))
    job = pipelines_api.job_body(spec, definition.LEADERBOARD, pipeline_root, arguments)
    body = pipelines_api.schedule_body(job, definition.LEADERBOARD, schedule)
    if dry_run:
        click.echo("POST projects/%s/locations/%s/schedules (not sent):" % (project, region))
        click.echo(json.dumps(body, indent=2))
        return
    created = pipelines_api.Pipelines(project, region, api_endpoint).create_schedule(body)
    click.echo("schedule %s: %s (%s); each run writes WORK_DIR/leaderboards/<date>/"
               % (created.get("name"), schedule, created.get("state", "ACTIVE")))


@click.command("promote")
@click.option("--candidate", help="the candidate model dir (a run's WORK_DIR/runs/RUN/candidate)")
@click.option("--production", required=True, help="the production folder")
@click.option("--run", "run_name", help="the version's name (default: the run folder's name)")
@click.option("--rollback", is_flag=True, help="point production back to the previous model")
def pipeline_promote(candidate, production, run_name, rollback):
    """Promote a candidate by hand (the command a manual pipeline's report names), or roll back."""
    from launcher.decide import production as production_lib
    from launcher.decide import promotion
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
        pointer, changed = production_lib.promote(candidate, production, name, promotion.run_comparison(candidate))
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
