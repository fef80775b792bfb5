"""`SiteMPIExecutor`: Parsl's MPIExecutor, its worker pool on a site."""

from collections.abc import Sequence
from typing import Any

from parsl.data_provider.staging import Staging
from parsl.executors import MPIExecutor
from parsl.executors.errors import InvalidResourceSpecification
from parsl.monitoring.radios.base import RadioConfig
from parsl.providers.base import ExecutionProvider

from pwgen.executors.site import BlockErrorHandler, SiteExecutor
from pwgen.tunnels import DEFAULT_CHECK_INTERVAL


class SiteMPIExecutor(SiteExecutor, MPIExecutor):
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
