"""``python -m tfproc inspect OUT``: look at a conversion output."""
import sys

from tfproc import startup

startup.exit_quietly_on_signals()     # before the imports below, which take seconds

from tfproc import inspect  # noqa: E402

USAGE = "usage: python -m tfproc inspect OUTPUT [--preview N] [--preview-dir DIR]   (see --help)"

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "inspect":
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    startup.exit_now(inspect.main(sys.argv[2:]))
