"""How site executors start (pwgen.executors.site): the config's sites prepare their
tunnels and certificates at once, with the DataFlowKernel's run id and run dir, and a
site's first blocks go out as soon as its interchange is up; PWGEN_SERIAL_START keeps
the old order."""

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider

from pwgen.executors import SiteHighThroughputExecutor
from pwgen.executors.site import SERIAL_START_ENV, SiteExecutor, start_together

PREPARE_SECONDS = 0.3


class _Record:
    def __init__(self) -> None:
        self.prepared: dict[str, tuple[str | None, str, float]] = {}
        self.scaled: list[tuple[str, int]] = []
        self.events: list[str] = []  # "<label> blocks", "<label> interchange"


@pytest.fixture
def record(monkeypatch: pytest.MonkeyPatch) -> _Record:
    """Preparation takes PREPARE_SECONDS and records who ran it where; Parsl's own
    start and scale-out are stand-ins."""
    seen = _Record()

    def prepare(self: SiteExecutor) -> None:
        time.sleep(PREPARE_SECONDS)
        self.tunnel = SimpleNamespace(  # type: ignore[assignment]
            start_supervisor=lambda: None, relay_address="10.1.1.1:54000"
        )
        seen.prepared[self.label] = (
            getattr(self, "run_id", None),
            threading.current_thread().name,
            time.monotonic(),
        )

    monkeypatch.setattr(SiteExecutor, "_prepare_site", prepare)

    def parsl_start(self: SiteExecutor) -> None:
        seen.events.append(f"{self.label} interchange")
        self.logconf_path = getattr(self, "logconf_path", None)  # as Parsl's start sets it
        self.initialize_scaling()  # as HighThroughputExecutor.start ends

    def scale_out(self: SiteExecutor, n: int) -> None:
        seen.scaled.append((self.label, n))
        seen.events.append(f"{self.label} blocks")

    monkeypatch.setattr(HighThroughputExecutor, "start", parsl_start)
    monkeypatch.setattr(SiteExecutor, "scale_out_facade", scale_out)
    return seen


def _sites(tmp_path: Path, count: int) -> list[SiteHighThroughputExecutor]:
    ssh_config = tmp_path / "config"
    ssh_config.write_text("Host site\n")
    return [
        SiteHighThroughputExecutor(
            label=f"lab{n}",
            provider=LocalProvider(init_blocks=1),  # type: ignore[no-untyped-call]
            ssh_config=str(ssh_config),
            host="site",
            internal_address="10.1.1.1",
            relay="/opt/env/bin/pwgen-relay",
            remote_dir="/home/u/.pwgen/work",
        )
        for n in range(1, count + 1)
    ]


def _start_like_the_dfk(sites: list[Any], run_dir: Path) -> float:
    """What DataFlowKernel.add_executors does: run id, run dir, start, one at a time."""
    began = time.monotonic()
    for site in sites:
        site.run_id = "run-1"
        site.run_dir = str(run_dir)
        site.start()
    return time.monotonic() - began


def test_sites_prepare_at_once_and_submit_their_blocks_when_up(
    tmp_path: Path, record: _Record
) -> None:
    sites = _sites(tmp_path, 3)
    start_together(sites)
    seconds = _start_like_the_dfk(sites, tmp_path)
    assert seconds < 2 * PREPARE_SECONDS  # not 3 preparations one after the other
    assert {label: run for label, (run, _, _) in record.prepared.items()} == {
        "lab1": "run-1",
        "lab2": "run-1",
        "lab3": "run-1",
    }
    assert record.prepared["lab2"][1] == "pwgen-prepare-lab2"
    assert record.scaled == [("lab1", 1), ("lab2", 1), ("lab3", 1)]
    assert all(site.provider.init_blocks == 0 for site in sites)  # type: ignore[union-attr]
    # Each site's blocks go out before its interchange starts (workers wait for it)...
    assert record.events[:2] == ["lab1 blocks", "lab1 interchange"]
    # ... with the launch command composed once, for this site's tunnel.
    assert "{" not in sites[0].launch_cmd.replace("{block_id}", "")
    assert "--port=None" in sites[0].launch_cmd  # the stand-in tunnel chose no port


def test_serial_start_keeps_the_old_order(
    tmp_path: Path, record: _Record, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SERIAL_START_ENV, "1")
    sites = _sites(tmp_path, 2)
    start_together(sites)
    _start_like_the_dfk(sites, tmp_path)
    first, second = (record.prepared[label][2] for label in ("lab1", "lab2"))
    assert second - first >= PREPARE_SECONDS
    assert record.scaled == []  # the strategy's first round submits them
    assert all(site.provider.init_blocks == 1 for site in sites)  # type: ignore[union-attr]


def test_a_failed_preparation_fails_that_site_start(
    tmp_path: Path, record: _Record, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare = SiteExecutor._prepare_site

    def failing(self: SiteExecutor) -> None:
        if self.label == "lab2":
            raise OSError("lab2 is unreachable")
        prepare(self)

    monkeypatch.setattr(SiteExecutor, "_prepare_site", failing)
    sites = _sites(tmp_path, 2)
    start_together(sites)
    _start_like_the_dfk(sites[:1], tmp_path)
    with pytest.raises(OSError, match="lab2 is unreachable"):
        sites[1].start()
