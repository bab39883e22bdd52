from tfproc import startup

startup.require("click", "requests", "googleapiclient", "yaml")

from launcher.cli import main  # noqa: E402

main(prog_name="python -m launcher")
