from tfproc import startup

startup.exit_quietly_on_signals()     # before the imports below, which take seconds
startup.require("click", "PIL")

from trainer.cli import main  # noqa: E402

main()
