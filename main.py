"""Convert a Unity Simulation run or Perception dataset into TFRecords: see ``python main.py --help``."""

from tfproc import startup

startup.exit_quietly_on_signals()     # before the imports below, which take seconds
startup.require("apache_beam", "click")

from tfproc.cli import main  # noqa: E402

if __name__ == "__main__":
    startup.exit_now(main())
