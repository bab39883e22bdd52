"""The launcher's exceptions: the one it shows users (a line that says what is wrong and what to do),
and a pipeline step's failure, which the step's record keeps."""


class LauncherError(Exception):
    """Printed as ``error: <message>``; ``exit_code`` 2 for bad arguments, 1 for failures."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(LauncherError):
    def __init__(self, message):
        super().__init__(message, exit_code=2)


class StepFailed(RuntimeError):
    """A pipeline step that cannot do its work; the message says why, and RUN_DIR/steps/ keeps it."""
