"""The exceptions the CLI turns into one line: ``longtail: error: ...`` (exit 2) or
``longtail: stopped: ...`` (exit 130), never a traceback."""


class LongtailError(Exception):
    """A problem with the user's input or environment, worded for a person."""


class TrainingInterrupted(LongtailError):
    """Raised after a checkpoint was written in answer to SIGINT/SIGTERM: ``where`` it stopped and
    ``how`` to go on, which depends on the command (a study resumes its runs without --resume)."""

    def __init__(self, where: str, how: str = "rerun the same command with --resume to continue") -> None:
        super().__init__(where, how)  # both in args, so the exception crosses a process pool intact
        self.where, self.how = where, how

    def __str__(self) -> str:
        return f"{self.where}; checkpoint written, {self.how}"
