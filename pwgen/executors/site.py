"""`SiteExecutor`: the lifecycle of a Parsl executor whose workers run on a remote site
(see pwgen.executors for the whole picture)."""

import atexit
import contextlib
import ipaddress
import logging
import os
import posixpath
import shlex
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any, cast

from parsl.errors import ConfigurationError
from parsl.executors import HighThroughputExecutor
from parsl.executors.errors import BadStateException
from parsl.executors.high_throughput.executor import HTEXFuture
from parsl.executors.high_throughput.manager_selector import RandomManagerSelector
from parsl.executors.status_handling import BlockProviderExecutor
from parsl.jobs.states import JobStatus

from pwgen.certificates import create_private_certificates, ship_certificates
from pwgen.executors.blocks import cancel_active_blocks
from pwgen.interchange_guard import guard_launch_cmd, run_of_parsl_dir
from pwgen.parsl_internals import default_interchange_launch_cmd, set_bad_state
from pwgen.staging.streams import submit_with_streams
from pwgen.tunnels import SiteTunnel

logger = logging.getLogger(__name__)

BlockErrorHandler = bool | Callable[[BlockProviderExecutor, dict[str, JobStatus]], None]
# Parsl's own default: one shared selector instance.
DEFAULT_SELECTOR = RandomManagerSelector()
#: Set (to anything but 0): sites prepare one after the other and their first blocks
#: wait for the strategy's first round, as before pwgen overlapped them (benchmarks).
SERIAL_START_ENV = "PWGEN_SERIAL_START"


def serial_start() -> bool:
    return os.environ.get(SERIAL_START_ENV, "0") != "0"


def start_together(executors: Iterable[Any]) -> None:
    """Let the site executors of one config prepare their sites at once: the first one
    the DataFlowKernel starts starts the others' tunnels and certificates in threads
    (Parsl starts executors one after the other). Not with PWGEN_SERIAL_START."""
    group = tuple(e for e in executors if isinstance(e, SiteExecutor))
    if serial_start():
        return
    for executor in group:
        executor._siblings = group


class SiteExecutor(HighThroughputExecutor):
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
        relay_allow: Sequence[str],
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
        self.relay_allow = tuple(relay_allow)
        self.tunnel = None
        self.remote_cert_dir = None
        self.remote_run_dir = None
        self._siblings: tuple[SiteExecutor, ...] = ()
        self._launch_composed = False
        self._preparing: Future[None] | None = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Tunnel and certificates (the config's sites prepare theirs at once), the first
        blocks, then Parsl's start() (the interchange starts while Slurm allocates)."""
        try:
            self._prepare_siblings()
            if self._preparing is None:
                self._prepare_site()
            else:
                self._preparing.result()  # re-raises what the preparation raised
            early = self._compose_launch_command_early()
            if early:
                self._submit_initial_blocks()
            super().start()  # type: ignore[no-untyped-call]
            if not early:
                self._submit_initial_blocks()
            assert self.tunnel is not None
            self.tunnel.start_supervisor()
        except BaseException:
            if self.blocks_to_job_id:
                cancel_active_blocks(self.label, self)
            self._teardown_site()
            raise
        logger.info(
            "%s: workers on site %s connect to %s", self.label, self.host, self.tunnel.relay_address
        )

    def initialize_scaling(self) -> None:
        """Parsl's (composes the launch command), once: pwgen may call it before
        Parsl's start() does."""
        if not self._launch_composed:
            super().initialize_scaling()  # type: ignore[no-untyped-call]
            self._launch_composed = True

    def _compose_launch_command_early(self) -> bool:
        """Compose the workers' launch command before the interchange starts, so the
        first blocks can be submitted at once: workers wait for the interchange (their
        address probe retries). Only when Parsl's start() would add nothing to it (no
        log config to pickle) and no block monitoring message would be lost."""
        if serial_start() or self.log_config or self.monitoring_messages is not None:
            return False
        self.logconf_path = None  # type: ignore[assignment]  # as Parsl sets it then
        self.initialize_scaling()
        return True

    def _prepare_site(self) -> None:
        """Tunnel up, certificates shipped, launch command set: network only, no Parsl
        state, so it may run in a thread while the DataFlowKernel starts another site."""
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
            relay_allow=self.relay_allow,
        )
        atexit.register(self._exit_without_cleanup)
        self.worker_port = self.tunnel.open()
        # Workers connect to the login node's internal address (the relay).
        self.all_addresses = {self.internal_address}
        if self.worker_logdir_root is None:
            self.worker_logdir_root = self.remote_run_dir
        if self.encrypted:
            self._ship_certificates(posixpath.join(site_dir, "certificates"))
        default_launch = default_interchange_launch_cmd()
        if list(self.interchange_launch_cmd) == default_launch:
            # Its own session; it stops (and the run is torn down) if this process dies.
            self.interchange_launch_cmd = guard_launch_cmd(
                default_launch, run_of_parsl_dir(self.run_dir)
            )

    def _prepare_siblings(self) -> None:
        """The first site the DataFlowKernel starts starts the others' preparation, in
        threads: they get the same run id and run dir from it as they will from the DFK."""
        for sibling in self._siblings:
            if sibling is self or sibling._preparing is not None or sibling.tunnel is not None:
                continue
            sibling.run_id = getattr(self, "run_id", None)
            sibling.run_dir = self.run_dir
            sibling._preparing = Future()
            threading.Thread(
                target=sibling._prepare_in_thread, name=f"pwgen-prepare-{sibling.label}"
            ).start()

    def _prepare_in_thread(self) -> None:
        assert self._preparing is not None
        try:
            self._prepare_site()
        except BaseException as err:  # raised again by this site's start()
            self._preparing.set_exception(err)
        else:
            self._preparing.set_result(None)

    def _submit_initial_blocks(self) -> None:
        """The first blocks now, not at the strategy's first round (after every site has
        started, up to a strategy period later)."""
        provider = getattr(self, "provider", None)
        if serial_start() or provider is None or provider.init_blocks < 1:
            return
        self.scale_out_facade(provider.init_blocks)
        provider.init_blocks = 0  # the strategy's first round must not add them again

    def shutdown(self, timeout: float = 10.0) -> None:
        """Parsl's shutdown, then leftover blocks cancelled and the site torn down."""
        try:
            super().shutdown(timeout)
        finally:
            try:
                if self.tunnel is not None:  # blocks the DFK skipped (bad state)
                    cancel_active_blocks(self.label, self)
            finally:
                self._teardown_site()

    def submit(
        self,
        func: Callable[..., Any],
        resource_specification: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> HTEXFuture:
        """Parsl's submit; a bash app's stdout and stderr are written on the site and
        brought back before the returned future completes (pwgen.staging.streams)."""
        future = submit_with_streams(
            self, super().submit, func, resource_specification, args, kwargs
        )
        return cast(HTEXFuture, future)  # HTEX's submit gave one, so it does

    def set_bad_state_and_fail_all(self, exception: Exception) -> None:
        """Parsl's, but safe while tasks finish or arrive meanwhile (pwgen's site watch
        calls it from its own thread): a snapshot of the tasks, done ones skipped."""
        set_bad_state(self, exception)
        for future in list(self.tasks.values()):
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
        # Overrides a private HTEX method (a row of pwgen.parsl_checks.ASSUMPTIONS).
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

    def _teardown_site(self) -> None:
        atexit.unregister(self._exit_without_cleanup)
        if self.tunnel is None:
            return
        self.tunnel.stop_supervisor()
        self._release_staging()  # through self.tunnel, still up
        tunnel, self.tunnel = self.tunnel, None
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
