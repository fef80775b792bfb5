"""Shared pytest fixtures."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Recorder
from pw_server import PWServer

from pwgen.providers.remote import RemoteClusterProvider


@pytest.fixture
def pw_server() -> Iterator[PWServer]:
    """A local PW API stand-in (tests/pw_server.py) on 127.0.0.1, stopped afterwards."""
    with PWServer() as server:
        yield server


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """The providers' ssh call replaced: commands are recorded, nothing is contacted."""
    record = Recorder()

    def run_remote(provider: Any, *args: Any, **kwargs: Any) -> tuple[int, str, str]:
        return record(provider, *args, **kwargs)

    monkeypatch.setattr(RemoteClusterProvider, "_run_remote", run_remote)
    return record


@pytest.fixture
def ssh_config(tmp_path: Path) -> str:
    """An ssh config with one site, `site`, at a documentation address (never reached)."""
    path = tmp_path / "ssh_config"
    path.write_text("Host site\n    HostName 192.0.2.1\n")
    return str(path)
