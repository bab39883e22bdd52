"""Beam's SDK worker process for ``--direct_running_mode multi_processing``, which ends as soon as
the main process is gone (Beam's own outlives a killed parent)."""
import sys

from tfproc import orphans

orphans.watch_main()

from apache_beam.runners.worker import sdk_worker_main  # noqa: E402

if __name__ == "__main__":
    sdk_worker_main.main(sys.argv)
