"""Convert a Unity Simulation run or Perception dataset into TFRecords: see ``python main.py --help``."""
import sys

from tfproc.cli import main

if __name__ == "__main__":
    sys.exit(main())
