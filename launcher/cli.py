"""``python -m launcher``: Unity Simulation transfers, training jobs (Vertex AI, this machine and
AI Platform) and the end-to-end pipeline; the commands live in ``launcher.commands``."""
import os
import sys

import click

from launcher.commands import jobs, pipeline, transfer
from launcher.errors import LauncherError


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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")     # TensorFlow's C++ start-up lines, where it is imported


for command in (transfer.transfer, transfer.transfer_status, jobs.train, jobs.status, jobs.wait, jobs.logs,
                jobs.cancel, jobs.list_jobs, pipeline.pipeline):
    main.add_command(command)
