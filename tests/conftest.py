"""Shared pytest fixtures."""

from collections.abc import Iterator

import pytest
from pw_server import PWServer


@pytest.fixture
def pw_server() -> Iterator[PWServer]:
    """A local PW API stand-in (tests/pw_server.py) on 127.0.0.1, stopped afterwards."""
    with PWServer() as server:
        yield server
