from tfproc import startup

startup.require("click", "PIL")

from trainer.cli import main  # noqa: E402

main()
