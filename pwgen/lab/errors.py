"""The lab's user-facing error."""

from pwgen.errors import PwgenError


class LabError(PwgenError):
    """The lab cannot be built, inspected or removed; the message says what to do."""
