"""The pipeline's runs and schedules on Vertex AI Pipelines: ``pipeline status``, ``wait``,
``cancel``, ``list`` and ``schedules``."""
import time

import click

from launcher.cloud import pipelines_api
from launcher.commands.common import endpoint_option, project_option
from launcher.errors import LauncherError
from launcher.jobs import training


def _vertex_pipeline_options(command):
    command = endpoint_option(command)
    command = click.option("--region", default="us-central1", show_default=True)(command)
    command = project_option(command)
    return command


@click.command("status")
@click.argument("run")
@_vertex_pipeline_options
def pipeline_status(run, project, region, api_endpoint):
    """Show a Vertex AI pipeline run (its id or full name)."""
    job = pipelines_api.Pipelines(project, region, api_endpoint).get(run)
    click.echo(_describe_run(job))


def _describe_run(job):
    lines = ["pipeline run %s: %s" % (job.get("name", "").rsplit("/", 1)[-1], pipelines_api.state_word(job))]
    for key in ("createTime", "startTime", "endTime"):
        if job.get(key):
            lines.append("  %s: %s" % (key, job[key]))
    for task, message in pipelines_api.failed_tasks(job):
        lines.append("  failed step: %s%s" % (task, ": " + message if message else ""))
    if (job.get("error") or {}).get("message"):
        lines.append("  error: %s" % job["error"]["message"])
    return "\n".join(lines)


@click.command("wait")
@click.argument("run")
@_vertex_pipeline_options
@click.option("--interval", default=60.0, show_default=True, type=float)
def pipeline_wait(run, project, region, api_endpoint, interval):
    """Poll a pipeline run until it ends; exit 0 only if it SUCCEEDED."""
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


@click.command("cancel")
@click.argument("run")
@_vertex_pipeline_options
def pipeline_cancel(run, project, region, api_endpoint):
    """Cancel a pipeline run (its train step cancels the Vertex job it started)."""
    pipelines_api.Pipelines(project, region, api_endpoint).cancel(run)
    click.echo("cancel requested for pipeline run %s" % run)


@click.command("list")
@_vertex_pipeline_options
@click.option("--limit", default=20, show_default=True, type=int)
def pipeline_list(project, region, api_endpoint, limit):
    """List recent pipeline runs."""
    for job in pipelines_api.Pipelines(project, region, api_endpoint).list(limit):
        click.echo("%-40s %-10s %s" % (job.get("name", "").rsplit("/", 1)[-1], pipelines_api.state_word(job),
                                       job.get("createTime", "")))


@click.command("schedules")
@_vertex_pipeline_options
@click.option("--pause", metavar="ID", help="pause this schedule")
@click.option("--delete", metavar="ID", help="delete this schedule")
def pipeline_schedules(project, region, api_endpoint, pause, delete):
    """List the pipeline's schedules; or pause or delete one."""
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
