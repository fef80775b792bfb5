"""Site-loss detection (pwgen.failover.loss): every worker's connection closed, the
tunnel proven healthy since, for a few seconds -> the site is lost and its tasks fail
as site failures; a broken tunnel, a site still starting or an idle site is not lost."""

import socket
from collections import Counter
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from test_failover import _Executor

from pwgen.failover import watch as watch_module
from pwgen.failover.errors import SiteLost, is_site_failure
from pwgen.failover.loss import CLOSE_FOR
from pwgen.failover.policy import Failover
from pwgen.failover.watch import SiteWatch
from pwgen.tunnels.links import established_to_loopback

PORT = 54321


class _Site(_Executor):
    """What SiteWatch reads of a site executor reached through a tunnel: 2 managers."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks = {tid: Future() for tid in range(4)}
        self.tunnel = SimpleNamespace(repairs=[], port=PORT, healthy_checked_at=None)
        self.managers = [{"active": True}, {"active": True}]


@pytest.fixture
def links(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """The connections the watch sees established to each worker port (set by tests)."""
    seen: Counter[int] = Counter({PORT: 2})
    monkeypatch.setattr(watch_module, "established_to_loopback", lambda ports: seen)
    return seen


def _watch(
    site: _Site, tasks: dict[int, dict[str, Any]] | None = None
) -> tuple[SiteWatch, Failover]:
    failover = Failover()
    dfk = SimpleNamespace(executors={"a": site}, tasks=tasks or {})
    return SiteWatch(failover, dfk, queue_wait=20), failover


def test_a_site_whose_workers_all_vanish_is_lost_once_its_tunnel_is_proven(
    links: Counter[int],
) -> None:
    site = _Site()
    records: dict[int, dict[str, Any]] = {
        1: {"executor": "a", "resource_specification": {}},
        2: {"executor": "a", "resource_specification": {"priority": 5}},
        3: {"executor": "b", "resource_specification": {}},
    }
    watch, failover = _watch(site, records)
    watch.check_once(9.0)
    links[PORT] = 0  # every worker's connection closed; the interchange still lists them
    watch.check_once(10.0)
    watch.check_once(14.0)
    assert not site.bad_state_is_set  # no healthy tunnel check since: maybe the tunnel
    site.tunnel.healthy_checked_at = 11.0
    watch.check_once(12.0)
    assert not site.bad_state_is_set  # not yet `confirm` seconds
    watch.check_once(13.5)
    assert isinstance(site.failed_with, SiteLost) and is_site_failure(site.failed_with)
    assert "2 manager(s)" in failover.health.abandoned()["a"]
    assert not failover.health.healthy("a")
    # Its plain tasks go ahead of the queue where they move; others are left as they are.
    specs = [records[tid]["resource_specification"] for tid in (1, 2, 3)]
    assert specs == [{"priority": 0}, {"priority": 5}, {}]


def test_a_repaired_tunnel_starts_the_clock_again(links: Counter[int]) -> None:
    """A broken tunnel closes every connection too; the workers reconnect once it is
    repaired, which they get the time to do."""
    site = _Site()
    watch, _ = _watch(site)
    watch.check_once(9.0)
    links[PORT] = 0
    watch.check_once(10.0)
    site.tunnel.repairs.append("master")
    site.tunnel.healthy_checked_at = 12.0
    watch.check_once(12.5)  # the repair seen: the clock restarts here
    watch.check_once(15.0)
    assert not site.bad_state_is_set
    links[PORT] = 2  # the workers are back
    watch.check_once(16.0)
    links[PORT] = 0
    watch.check_once(17.0)
    site.tunnel.healthy_checked_at = 17.5
    watch.check_once(19.0)
    assert not site.bad_state_is_set
    watch.check_once(20.0)
    assert isinstance(site.failed_with, SiteLost)


def test_a_site_whose_connections_were_never_counted_is_never_lost(
    links: Counter[int],
) -> None:
    """No connection ever seen while managers are listed: the count is not this site's
    (another network namespace, an address form not read), so it proves nothing."""
    site = _Site()
    watch, _ = _watch(site)
    links[PORT] = 0
    site.tunnel.healthy_checked_at = 0.5
    for now in (1.0, 5.0, 10.0, 20.0):
        watch.check_once(now)
    assert not site.bad_state_is_set


def test_new_workers_are_watched_closely_until_counted(links: Counter[int]) -> None:
    """Managers listed before their connections were counted: the watch checks more
    often (a site lost in that second is caught), but not forever."""
    site = _Site()
    watch, _ = _watch(site)
    links[PORT] = 0
    watch.check_once(1.0)
    assert watch.loss.watching_closely(1.5)
    assert not watch.loss.watching_closely(1.0 + CLOSE_FOR)  # connections never visible
    links[PORT] = 2
    watch.check_once(1.2)
    assert not watch.loss.watching_closely(1.5)
    # Counted once, the site's loss is told as usual.
    links[PORT] = 0
    site.tunnel.healthy_checked_at = 1.5
    for now in (1.4, 3.0, 4.5):
        watch.check_once(now)
    assert isinstance(site.failed_with, SiteLost)


@pytest.mark.parametrize("state", ["starting", "idle", "held"])
def test_no_connection_is_no_loss_without_listed_managers_and_work(
    links: Counter[int], state: str
) -> None:
    """Blocks still pending (no manager yet), nothing outstanding, or managers held
    for scale-in: a site without connections is not lost."""
    site = _Site()
    if state == "starting":
        site.managers = []
    elif state == "idle":
        site.tasks = {}
    else:
        site.managers = [{"active": False}]
    watch, _ = _watch(site)
    watch.check_once(9.0)
    links[PORT] = 0
    site.tunnel.healthy_checked_at = 10.5
    for now in (10.0, 12.0, 15.0, 19.0):
        watch.check_once(now)
    assert not site.bad_state_is_set


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_established_connections_are_counted_per_port(family: socket.AddressFamily) -> None:
    """The kernel's tables, for real: connections to a listener here, then closed. The
    interchange's socket is dual-stack (AF_INET6, IPv4 clients mapped)."""
    with socket.socket(family) as listener:
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::ffff:127.0.0.1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        accepted = [listener.accept()[0] for _ in clients]
        assert established_to_loopback([port, port + 1]) == Counter({port: 3})
        for sock in (*clients, *accepted):
            sock.close()
        counts = established_to_loopback([port])
        assert counts is not None and counts[port] == 0
    assert established_to_loopback([port], tables=["/nonexistent"]) is None


def test_connections_to_a_parsl_style_zmq_socket_are_counted() -> None:
    """As the interchange binds its worker port: a ROUTER with IPv6 on, on 127.0.0.1."""
    import zmq

    context = zmq.Context()
    router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    try:
        router.setsockopt(zmq.IPV6, True)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealer.send(b"hello")
        assert router.poll(5000) and router.recv_multipart()[1] == b"hello"
        assert established_to_loopback([port]) == Counter({port: 1})
    finally:
        dealer.close(linger=0)
        router.close(linger=0)
        context.term()
