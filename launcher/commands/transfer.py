"""``transfer`` and ``transfer-status``: Unity Simulation copies a run into your bucket (seed 003,
phase 1)."""
import json
import time

import click

from launcher.cloud import usim
from launcher.errors import LauncherError


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


@click.command()
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


@click.command("transfer-status")
@click.argument("transfer_id")
@_usim_options
def transfer_status(transfer_id, api_url, token, project_id):
    """Show one data transfer."""
    transfer = _transfer_client(api_url, token, project_id).get(transfer_id)
    click.echo(json.dumps(transfer, indent=2, sort_keys=True))
