"""`SiteHighThroughputExecutor`: Parsl's HighThroughputExecutor, its workers on a site."""

from collections.abc import Sequence

from parsl.data_provider.staging import Staging
from parsl.executors.high_throughput.manager_selector import ManagerSelector
from parsl.monitoring.radios.base import RadioConfig
from parsl.providers.base import ExecutionProvider

from pwgen.executors.site import DEFAULT_SELECTOR, BlockErrorHandler, SiteExecutor
from pwgen.tunnels import DEFAULT_CHECK_INTERVAL


class SiteHighThroughputExecutor(SiteExecutor):
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
    relay_allow : sequence of str (default: any)
        Networks (CIDR) whose hosts the relay serves; others are closed at once.

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
        manager_selector: ManagerSelector = DEFAULT_SELECTOR,
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
        relay_allow: Sequence[str] = (),
    ) -> None:
        self._init_site(
            address,
            ssh_config,
            host,
            internal_address,
            relay,
            remote_dir,
            tunnel_check_interval,
            relay_allow,
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
