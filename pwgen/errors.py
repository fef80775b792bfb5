"""Errors a user can act on.

Every `PwgenError` is printed by the CLI as one line (no traceback) and ends the
command with its `exit_code`: 2 for bad input, the default.
"""


class PwgenError(Exception):
    """Base class: a problem the user can fix, shown as a one-line message."""

    exit_code = 2

    def __str__(self) -> str:
        # One line, always: multi-line causes (YAML marks, HTTP bodies) are folded.
        return " ".join(super().__str__().split())


class SitesError(PwgenError):
    """A sites file (or a site built from the PW API) is invalid."""


class PWAPIError(PwgenError):
    """The PW API could not be reached, refused the key, or answered nonsense."""


class OutputError(PwgenError):
    """An output file cannot be written where the user asked."""


class ConfigError(PwgenError):
    """A Parsl configuration cannot be generated for the given sites."""


class WorkflowError(PwgenError):
    """The user's workflow script cannot be started (missing, not Python, ...)."""
