"""Parsl executors whose workers run on a remote site, reached through pwgen's tunnel.

`SiteHighThroughputExecutor` is Parsl's `HighThroughputExecutor` (and `SiteMPIExecutor`
Parsl's `MPIExecutor`) plus what a site that shares no network and no filesystem with
the controller needs, owned by the executor so that plain Parsl brings it up and down:

    parsl.load(config)   start():    tunnel up (ControlMaster, -R forward, relay on the
                                     login node; pwgen.tunnels) -> worker_port;
                                     fresh CurveZMQ certs, copied to the site (0700,
                                     no real server secret; pwgen.certificates);
                                     the launch command gets -a <login internal
                                     IP>, the port, --cert_dir and --logdir on the
                                     site; then Parsl's start();
                                     the tunnel supervisor starts.
    dfk.cleanup()        shutdown(): Parsl's shutdown (the DFK has already scaled in,
                                     i.e. cancelled, the blocks), then any block still
                                     not terminal is cancelled here, the remote cert
                                     copy removed, the relay, forward and master stopped.

A process that exits without `dfk.cleanup()` still gets the site torn down (an `atexit`
hook: blocks cancelled, tunnel closed); Parsl itself only warns then.

Ctrl-C: the terminal sends SIGINT to the whole foreground process group, which would
include Parsl's interchange, and `dfk.cleanup()` then hangs for ever (HTEX asks the dead
interchange which managers are connected, with no timeout, before cancelling blocks).
So the interchange runs in its own session (as the ssh master and the provider's ssh
calls do), and the commands cleanup needs answer "no managers" once the interchange
process has exited, so the blocks are still cancelled.

The interchange always listens on loopback (`address` must be a loopback IP literal):
the site reaches it only through the tunnel. Encryption stays on by default.
"""

import atexit
import contextlib
import ipaddress
import logging
import os
import posixpath
import shlex
import sys
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import InvalidStateError
from typing import Any

from parsl.data_provider.staging import Staging
from parsl.errors import ConfigurationError
from parsl.executors import HighThroughputExecutor, MPIExecutor
from parsl.executors.errors import BadStateException, InvalidResourceSpecification
from parsl.executors.high_throughput.executor import DEFAULT_INTERCHANGE_LAUNCH_CMD
from parsl.executors.high_throughput.manager_selector import (
    ManagerSelector,
    RandomManagerSelector,
)
from parsl.executors.status_handling import BlockProviderExecutor
from parsl.jobs.states import TERMINAL_STATES, JobStatus
from parsl.monitoring.radios.base import RadioConfig
from parsl.providers.base import ExecutionProvider

from pwgen.certificates import certificate_bundle as certificate_bundle  # re-exported
from pwgen.certificates import create_private_certificates, ship_certificates
from pwgen.tunnels import DEFAULT_CHECK_INTERVAL, SiteTunnel

logger = logging.getLogger(__name__)

BlockErrorHandler = bool | Callable[[BlockProviderExecutor, dict[str, JobStatus]], None]
# Parsl's own default: one shared selector instance.
_DEFAULT_SELECTOR = RandomManagerSelector()
# Runs a command in a new session: out of reach of the terminal's Ctrl-C.
_NEW_SESSION = "import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])"


class _SiteExecutor(HighThroughputExecutor):
    """The site lifecycle shared by the HTEX and MPI variants (not used on its own)."""

    ssh_config: str
    host: str
    internal_address: str
    relay: str
    remote_dir: str
    tunnel_check_interval: float
    tunnel: SiteTunnel | None
    remote_cert_dir: str | None
    remote_run_dir: str | None

    def _init_site(
        self,
        address: str,
        ssh_config: str,
        host: str,
        internal_address: str,
        relay: str,
        remote_dir: str,
        tunnel_check_interval: float,
    ) -> None:
        """Check and store the site arguments (no network access)."""
        try:
            loopback = ipaddress.ip_address(address).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigurationError(
                f"address {address!r}: the interchange must listen on a loopback IP literal "
                "(e.g. 127.0.0.1); the site reaches it through pwgen's tunnel"
            )
        try:
            ipaddress.ip_address(internal_address)
        except ValueError:
            raise ConfigurationError(
                f"internal_address {internal_address!r}: expected the login node's IP address"
            ) from None
        if not os.path.isfile(os.path.expanduser(ssh_config)):
            raise ConfigurationError(f"ssh_config {ssh_config!r}: no such file")
        if not host or host.startswith("-"):
            raise ConfigurationError(f"host {host!r}: expected a Host alias of {ssh_config}")
        for name, path in (("remote_dir", remote_dir), ("relay", relay)):
            if not posixpath.isabs(path):
                raise ConfigurationError(f"{name} {path!r} must be an absolute path on the site")
        self.ssh_config = ssh_config
        self.host = host
        self.internal_address = internal_address
        self.relay = relay
        self.remote_dir = remote_dir
        self.tunnel_check_interval = tunnel_check_interval
        self.tunnel = None
        self.remote_cert_dir = None
        self.remote_run_dir = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Tunnel, certificates and launch command for the site; then Parsl's start()."""
        run = str(getattr(self, "run_id", None) or uuid.uuid4())
        self.remote_run_dir = posixpath.join(posixpath.normpath(self.remote_dir), run)
        site_dir = posixpath.join(self.remote_run_dir, self.label)
        self.tunnel = SiteTunnel(
            ssh_config=self.ssh_config,
            host=self.host,
            internal_address=self.internal_address,
            relay=self.relay,
            remote_dir=site_dir,
            port=self.worker_port,
            port_range=self.worker_port_range or (54000, 55000),
            check_interval=self.tunnel_check_interval,
            log_file=os.path.join(self.logdir, "ssh-master.log"),
        )
        atexit.register(self._exit_without_cleanup)
        try:
            self.worker_port = self.tunnel.open()
            # Workers connect to the login node's internal address (the relay).
            self.all_addresses = {self.internal_address}
            if self.worker_logdir_root is None:
                self.worker_logdir_root = self.remote_run_dir
            if self.encrypted:
                self._ship_certificates(posixpath.join(site_dir, "certificates"))
            if list(self.interchange_launch_cmd) == DEFAULT_INTERCHANGE_LAUNCH_CMD:
                self.interchange_launch_cmd = [
                    sys.executable,
                    "-c",
                    _NEW_SESSION,
                    *DEFAULT_INTERCHANGE_LAUNCH_CMD,
                ]
            super().start()  # type: ignore[no-untyped-call]
            self.tunnel.start_supervisor()
        except BaseException:
            self._teardown_site()
            raise
        logger.info(
            "%s: workers on site %s connect to %s", self.label, self.host, self.tunnel.relay_address
        )

    def shutdown(self, timeout: float = 10.0) -> None:
        """Parsl's shutdown, then leftover blocks cancelled and the site torn down."""
        try:
            super().shutdown(timeout)
        finally:
            try:
                self._cancel_leftover_blocks()
            finally:
                self._teardown_site()

    def set_bad_state_and_fail_all(self, exception: Exception) -> None:
        """Parsl's, but safe while tasks finish or arrive meanwhile (pwgen's site watch
        calls it from its own thread): a snapshot of the tasks, done ones skipped."""
        self._executor_exception = exception
        self._executor_bad_state.set()
        for future in list(self._tasks.values()):
            if not future.done():
                with contextlib.suppress(InvalidStateError):  # finished just now
                    future.set_exception(BadStateException(self, exception))  # type: ignore[no-untyped-call]

    # --- interchange commands that must not hang once the interchange is gone ------------

    def _interchange_gone(self) -> bool:
        proc = self.interchange_proc
        return proc is not None and proc.poll() is not None

    def connected_managers(self) -> list[dict[str, Any]]:
        if self._interchange_gone():
            return []
        managers: list[dict[str, Any]] = super().connected_managers()
        return managers

    def connected_blocks(self) -> list[str]:
        if self._interchange_gone():
            return []
        blocks: list[str] = super().connected_blocks()
        return blocks

    def _hold_manager(self, manager_id: str) -> None:
        if not self._interchange_gone():
            super()._hold_manager(manager_id)

    def _ship_certificates(self, remote: str) -> None:
        """Fresh certs for this run, copied to the site without the server's secret key."""
        cert_dir: str = self.cert_dir or create_private_certificates(self.logdir)
        self.cert_dir = cert_dir  # type: ignore[assignment]  # Parsl infers None only
        assert self.tunnel is not None
        ship_certificates(self.tunnel, cert_dir, remote)
        self.remote_cert_dir = remote
        if "{cert_dir}" not in self.launch_cmd:
            logger.warning("%s: launch_cmd has no {cert_dir}: workers get no certs", self.label)
        escaped = remote.replace("{", "{{").replace("}", "}}")
        self.launch_cmd = self.launch_cmd.replace("{cert_dir}", escaped)

    def _cancel_leftover_blocks(self) -> None:
        """Cancel blocks the DFK did not (it skips an executor in bad state)."""
        provider = self.provider
        if provider is None or self.tunnel is None:
            return
        status = self._status
        leftover = [
            job
            for block, job in list(self.blocks_to_job_id.items())
            if block not in status or status[block].state not in TERMINAL_STATES
        ]
        if leftover:
            logger.info("%s: cancelling blocks still active: %s", self.label, leftover)
            try:
                provider.cancel(leftover)
            except Exception as err:  # keep tearing down the site
                logger.warning("%s: cancelling %s failed: %s", self.label, leftover, err)

    def _teardown_site(self) -> None:
        tunnel, self.tunnel = self.tunnel, None
        atexit.unregister(self._exit_without_cleanup)
        if tunnel is None:
            return
        tunnel.stop_supervisor()
        self._release_staging()
        if self.remote_cert_dir is not None:
            code, _, err = tunnel.run(f"rm -rf -- {shlex.quote(self.remote_cert_dir)}")
            if code != 0:
                logger.warning("%s: removing %s failed: %s", self.label, self.remote_cert_dir, err)
            self.remote_cert_dir = None
        tunnel.close()

    def _release_staging(self) -> None:
        """Staging providers that keep data on the site (pwgen.staging) remove it now."""
        for staging in self.storage_access or ():
            release = getattr(staging, "release_site", None)
            if callable(release):
                try:
                    release(self)
                except Exception as err:  # keep tearing down the site
                    logger.warning("%s: releasing %r failed: %s", self.label, staging, err)

    def _exit_without_cleanup(self) -> None:
        """atexit: the DFK was never cleaned up; do not leave the site running."""
        if self.tunnel is None:
            return
        logger.warning("%s: Python exits without dfk.cleanup(): shutting site down", self.label)
        try:
            self.shutdown()
        except Exception as err:
            logger.warning("%s: shutdown at exit failed: %s", self.label, err)
            self._teardown_site()


class SiteHighThroughputExecutor(_SiteExecutor):
    """Parsl's `HighThroughputExecutor` with its workers on a remote site.

    Every `HighThroughputExecutor` argument (same names, positions and defaults, except
    `address`: 127.0.0.1, which must stay a loopback IP literal), plus, keyword-only:

    ssh_config : str (required)
        OpenSSH client config on this machine (pwgen's `.pwgen/ssh/config`), with a
        ControlPath (one shared master per site) and the site's host key pinned.
    host : str (required)
        The site's `Host` alias in `ssh_config` (pwgen: the site label).
    internal_address : str (required)
        The login node's IP address as the compute nodes see it (facts).
    relay : str (required)
        Absolute path of `pwgen-relay` on the login node (facts).
    remote_dir : str (required)
        Absolute directory on the site, shared with the compute nodes (facts:
        `workdir`). Each run uses `<remote_dir>/<run_id>/`: worker logs (unless
        `worker_logdir_root` is given), `<label>/certificates` (removed at shutdown),
        the relay's pid file and log.
    tunnel_check_interval : float (default 2.0)
        Seconds between two checks of the ssh master, forward and relay.

    `worker_port` None (the default) picks a port free here and on the login node.
    The provider runs scheduler commands over the same ssh config (pwgen's
    `SSHSlurmProvider` / `SSHPBSProProvider`).
    """

    def __init__(
        self,
        label: str = "HighThroughputExecutor",
        provider: ExecutionProvider | None = None,
        launch_cmd: str | None = None,
        interchange_launch_cmd: Sequence[str] | None = None,
        address: str = "127.0.0.1",
        loopback_address: str = "127.0.0.1",
        worker_port: int | None = None,
        worker_port_range: tuple[int, int] | None = (54000, 55000),
        interchange_port_range: tuple[int, int] | None = (55000, 56000),
        storage_access: list[Staging] | None = None,
        working_dir: str | None = None,
        worker_debug: bool = False,
        cores_per_worker: float = 1.0,
        mem_per_worker: float | None = None,
        max_workers_per_node: int | None = None,
        cpu_affinity: str = "none",
        available_accelerators: int | Sequence[str] = (),
        prefetch_capacity: int = 0,
        heartbeat_threshold: int = 120,
        heartbeat_period: int = 30,
        drain_period: int | None = None,
        poll_period: int = 10,
        address_probe_timeout: int | None = None,
        worker_logdir_root: str | None = None,
        manager_selector: ManagerSelector = _DEFAULT_SELECTOR,
        block_error_handler: BlockErrorHandler = True,
        encrypted: bool = True,
        remote_monitoring_radio: RadioConfig | None = None,
        *,
        ssh_config: str,
        host: str,
        internal_address: str,
        relay: str,
        remote_dir: str,
        tunnel_check_interval: float = DEFAULT_CHECK_INTERVAL,
    ) -> None:
        self._init_site(
            address, ssh_config, host, internal_address, relay, remote_dir, tunnel_check_interval
        )
        super().__init__(
            label=label,
            provider=provider,
            launch_cmd=launch_cmd,
            interchange_launch_cmd=interchange_launch_cmd,
            address=address,
            loopback_address=loopback_address,
            worker_port=worker_port,
            worker_port_range=worker_port_range,
            interchange_port_range=interchange_port_range,
            storage_access=storage_access,
            working_dir=working_dir,
            worker_debug=worker_debug,
            cores_per_worker=cores_per_worker,
            mem_per_worker=mem_per_worker,
            max_workers_per_node=max_workers_per_node,
            cpu_affinity=cpu_affinity,
            available_accelerators=available_accelerators,
            prefetch_capacity=prefetch_capacity,
            heartbeat_threshold=heartbeat_threshold,
            heartbeat_period=heartbeat_period,
            drain_period=drain_period,
            poll_period=poll_period,
            address_probe_timeout=address_probe_timeout,
            worker_logdir_root=worker_logdir_root,
            manager_selector=manager_selector,
            block_error_handler=block_error_handler,
            encrypted=encrypted,
            remote_monitoring_radio=remote_monitoring_radio,
        )


class SiteMPIExecutor(_SiteExecutor, MPIExecutor):
    """Parsl's `MPIExecutor` with its worker pool on a remote site (see
    `SiteHighThroughputExecutor` for the keyword-only site arguments).

    Every `MPIExecutor` argument, except `address` (127.0.0.1, loopback only) and
    `encrypted` (True here; Parsl's MPIExecutor defaults to False). The provider must use
    `SimpleLauncher`; `mpi_launcher` is `srun` on Slurm, `mpiexec` on PBS Pro.
    """

    def __init__(
        self,
        label: str = "MPIExecutor",
        provider: ExecutionProvider | None = None,
        launch_cmd: str | None = None,
        interchange_launch_cmd: str | None = None,
        address: str = "127.0.0.1",
        loopback_address: str = "127.0.0.1",
        worker_port: int | None = None,
        worker_port_range: tuple[int, int] | None = (54000, 55000),
        interchange_port_range: tuple[int, int] | None = (55000, 56000),
        storage_access: list[Staging] | None = None,
        working_dir: str | None = None,
        worker_debug: bool = False,
        max_workers_per_block: int = 1,
        prefetch_capacity: int = 0,
        heartbeat_threshold: int = 120,
        heartbeat_period: int = 30,
        drain_period: int | None = None,
        poll_period: int = 10,
        address_probe_timeout: int | None = None,
        worker_logdir_root: str | None = None,
        mpi_launcher: str = "mpiexec",
        block_error_handler: BlockErrorHandler = True,
        encrypted: bool = True,
        remote_monitoring_radio: RadioConfig | None = None,
        *,
        ssh_config: str,
        host: str,
        internal_address: str,
        relay: str,
        remote_dir: str,
        tunnel_check_interval: float = DEFAULT_CHECK_INTERVAL,
    ) -> None:
        self._init_site(
            address, ssh_config, host, internal_address, relay, remote_dir, tunnel_check_interval
        )
        MPIExecutor.__init__(
            self,
            label=label,
            provider=provider,
            launch_cmd=launch_cmd,
            interchange_launch_cmd=interchange_launch_cmd,
            address=address,
            loopback_address=loopback_address,
            worker_port=worker_port,
            worker_port_range=worker_port_range,
            interchange_port_range=interchange_port_range,
            storage_access=storage_access,
            working_dir=working_dir,
            worker_debug=worker_debug,
            max_workers_per_block=max_workers_per_block,
            prefetch_capacity=prefetch_capacity,
            heartbeat_threshold=heartbeat_threshold,
            heartbeat_period=heartbeat_period,
            drain_period=drain_period,
            poll_period=poll_period,
            address_probe_timeout=address_probe_timeout,
            worker_logdir_root=worker_logdir_root,
            mpi_launcher=mpi_launcher,
            block_error_handler=block_error_handler,
            encrypted=encrypted,
            remote_monitoring_radio=remote_monitoring_radio,
        )

    def validate_resource_spec(self, resource_specification: dict[str, Any]) -> None:
        """Parsl's checks, plus two specs Parsl accepts and then never runs: without
        `num_nodes` the pool hangs (Parsl issue #3427); with more nodes than a block has,
        the task waits for them for ever."""
        super().validate_resource_spec(resource_specification)
        nodes = resource_specification.get("num_nodes")
        if nodes is None:
            raise InvalidResourceSpecification(
                {"num_nodes"}, f"{self.label}: an MPI app must say how many nodes it takes"
            )
        per_block = getattr(self.provider, "nodes_per_block", None)
        if not isinstance(nodes, int) or nodes < 1 or (per_block and nodes > per_block):
            raise InvalidResourceSpecification(
                {"num_nodes"},
                f"{self.label}: num_nodes={nodes!r}, expected a whole number from 1 to "
                f"{per_block} (nodes_per_block)",
            )
