"""The tunnel's one error: a site's worker-port path could not be set up."""

from pwgen.errors import PwgenError


class TunnelError(PwgenError):
    """A site's tunnel could not be set up (ssh master, forward, relay or the path)."""
