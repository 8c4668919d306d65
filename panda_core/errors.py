"""The project's own error: one line that names the problem and the fix."""


class PandaError(Exception):
    """A user-facing error. The CLI prints it as one line and exits non-zero;
    the app shows it as a message. Never wraps a traceback for the user."""


class Cancelled(Exception):  # noqa: N818 (the name says what happened, like KeyboardInterrupt)
    """Raised inside a run when the caller's `should_stop` says so; recorded as
    "cancelled", never as a failure."""
