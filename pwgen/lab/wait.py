"""Ready-made waits: poll a condition with a deadline instead of sleeping blindly."""

import socket
from collections.abc import Callable
from typing import TypeVar

from pwgen.lab.errors import LabError
from pwgen.poll import poll

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], what: str, timeout: float = 30, hint: str = "") -> T:
    """Call `check` until it returns something other than None/False; return that.

    Polls quickly at first (most things are ready in milliseconds), then backs off.
    """
    result = poll(check, timeout, interval=0.005, backoff=1.5)
    if result is None:
        raise LabError(f"timed out after {timeout:g} s waiting for {what}{hint}")
    return result


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connect succeeds (callers pass lab addresses only)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
