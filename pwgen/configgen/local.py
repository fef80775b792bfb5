"""Executors for sites on this machine (`scheduler: local`), each on a `LocalProvider`.

The interchange and the workers both run here: the interchange listens on loopback.
"""

from typing import Any

from pwgen.configgen.source import Call, ExecutorSource
from pwgen.sites import Site


def local_executor(site: Site) -> ExecutorSource:
    """The executor (and LocalProvider) of a local site."""
    builders = {"htex": _local_htex, "mpi": _local_mpi, "flux": _local_flux}
    call = builders[site.executor](site)
    summary = f"{site.executor} on this machine ({site.scheduler} provider)"
    return ExecutorSource(site.label, f"site_{site.label}", summary, call)


def _local_provider(site: Site, launcher: str) -> Call:
    return Call(
        "LocalProvider",
        {
            "nodes_per_block": 1,
            "init_blocks": site.init_blocks,
            "min_blocks": site.min_blocks,
            "max_blocks": site.max_blocks,
            "launcher": Call(launcher),
            "worker_init": "\n".join(site.worker_init),
        },
    )


def _local_htex(site: Site) -> Call:
    kwargs: dict[str, Any] = {
        "label": site.label,
        # Workers on this machine: the interchange listens on loopback only.
        "address": "127.0.0.1",
        "encrypted": True,
        "cores_per_worker": site.cores_per_worker,
    }
    if site.max_workers_per_node is not None:
        kwargs["max_workers_per_node"] = site.max_workers_per_node
    kwargs["provider"] = _local_provider(site, "SingleNodeLauncher")
    return Call("HighThroughputExecutor", kwargs)


def _local_mpi(site: Site) -> Call:
    return Call(
        "MPIExecutor",
        {
            "label": site.label,
            "address": "127.0.0.1",
            # MPIExecutor defaults to unencrypted; pwgen keeps encryption on everywhere.
            "encrypted": True,
            "max_workers_per_block": site.max_workers_per_node or 1,
            "mpi_launcher": "mpiexec",
            # MPIExecutor requires SimpleLauncher: one worker pool per block.
            "provider": _local_provider(site, "SimpleLauncher"),
        },
    )


def _local_flux(site: Site) -> Call:
    return Call(
        "FluxExecutor",
        {"label": site.label, "provider": _local_provider(site, "SingleNodeLauncher")},
    )
