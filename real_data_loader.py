"""Convert real photos with boxes (UnityGroceries-Real or COCO) into TFRecords: see ``--help``."""
import sys

from tfproc import startup

startup.exit_quietly_on_signals()     # before the imports below, which take seconds
startup.require("apache_beam", "PIL")

from tfproc.realdata import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
