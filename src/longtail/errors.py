"""The one exception type the CLI turns into a one-line message and exit code 2."""


class LongtailError(Exception):
    """A problem with the user's input or environment, worded for a person.

    The CLI prints ``longtail: error: <message>`` and exits with status 2, never a traceback.
    """
