"""The exceptions the CLI turns into one line: ``longtail: error: ...`` (exit 2) or
``longtail: stopped: ...`` (exit 130), never a traceback."""


class LongtailError(Exception):
    """A problem with the user's input or environment, worded for a person."""


class TrainingInterrupted(LongtailError):
    """Raised after a checkpoint was written in answer to SIGINT/SIGTERM."""
