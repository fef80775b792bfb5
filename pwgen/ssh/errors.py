"""SshError: pwgen's host keys or ssh settings are missing or wrong."""

from pwgen.errors import PwgenError


class SshError(PwgenError):
    """Host keys or ssh settings are missing or wrong."""
