"""`SiteFluxExecutor`: HTEX on a site whose every block is one Flux instance.

The block (`FluxInstanceLauncher`) starts a Flux broker on each of its nodes and runs
the HTEX worker pool inside that instance. Tasks reach the pool through pwgen's tunnel
like every other site's. An app that asks for ranks with FluxExecutor's own keys

    parsl_resource_specification={"num_tasks": 2, "num_nodes": 2}

runs as a job of the instance: the worker hands it to `flux run` (pwgen_worker.run_in_flux),
Flux places and packs the ranks inside the block, each rank runs the app (a bash app's
command runs as those ranks, with Flux's PMI for MPI), and rank 0's result is the task's.
Apps without these keys run in the pool itself, on the block's first node, as on any
HTEX site (see docs/flux.md for why this design).
"""

import functools
from collections.abc import Callable
from typing import Any

from parsl.errors import ConfigurationError
from parsl.executors.errors import InvalidResourceSpecification
from parsl.executors.high_throughput.executor import HTEXFuture

import pwgen_worker
from pwgen.executors.htex import SiteHighThroughputExecutor
from pwgen.providers.flux_launcher import FluxInstanceLauncher

#: FluxExecutor's resource keys (parsl.executors.flux): what a Flux job of a task asks for.
FLUX_KEYS = ("num_tasks", "num_nodes", "cores_per_task", "gpus_per_task")
#: Keys HTEX itself takes (the interchange's task priority).
HTEX_KEYS = ("priority",)


class SiteFluxExecutor(SiteHighThroughputExecutor):
    """`SiteHighThroughputExecutor` arguments; its provider's launcher must be a
    `FluxInstanceLauncher` (it names the site's `flux`)."""

    def start(self) -> None:
        if not isinstance(getattr(self.provider, "launcher", None), FluxInstanceLauncher):
            raise ConfigurationError(
                f"{self.label}: a SiteFluxExecutor's provider needs a FluxInstanceLauncher"
            )
        super().start()

    @property
    def flux(self) -> str:
        launcher: FluxInstanceLauncher = self.provider.launcher  # type: ignore[union-attr]
        return launcher.flux

    def validate_resource_spec(self, resource_specification: dict[str, Any]) -> None:
        """FluxExecutor's keys (whole numbers ≥ 1, no more nodes than a block has) and
        HTEX's priority; anything else is refused at the app call."""
        resource_specification = resource_specification or {}  # an app's default None
        unknown = set(resource_specification) - set(FLUX_KEYS) - set(HTEX_KEYS)
        if unknown:
            raise InvalidResourceSpecification(
                unknown, f"{self.label}: a Flux site takes {', '.join(FLUX_KEYS + HTEX_KEYS)}"
            )
        for key in FLUX_KEYS:
            value = resource_specification.get(key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidResourceSpecification(
                    {key}, f"{self.label}: {key}={value!r}, expected a whole number ≥ 1"
                )
        nodes = resource_specification.get("num_nodes")
        per_block = getattr(self.provider, "nodes_per_block", None)
        if nodes is not None and per_block and nodes > per_block:
            raise InvalidResourceSpecification(
                {"num_nodes"},
                f"{self.label}: num_nodes={nodes} but a block has {per_block} (nodes_per_block)",
            )

    def submit(
        self,
        func: Callable[..., Any],
        resource_specification: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> HTEXFuture:
        """A task with Flux keys becomes a Flux job of its block's instance."""
        resource_specification = resource_specification or {}
        self.validate_resource_spec(resource_specification)
        request = {
            key: resource_specification[key] for key in FLUX_KEYS if key in resource_specification
        }
        htex_spec = {
            key: resource_specification[key] for key in HTEX_KEYS if key in resource_specification
        }
        if request:
            func = self._as_flux_job(func, request)
        return super().submit(func, htex_spec, *args, **kwargs)

    def _as_flux_job(self, func: Callable[..., Any], request: dict[str, int]) -> Callable[..., Any]:
        assert self.remote_run_dir is not None, "submit before start"
        job = {
            **request,
            "flux": self.flux,
            # Shared by the block's nodes: every rank reads the task from there.
            "jobs_dir": f"{self.remote_run_dir}/{self.label}/flux-jobs",
        }
        wrapped = functools.partial(pwgen_worker.run_in_flux, job, func)
        wrapped.__name__ = getattr(func, "__name__", "app")  # type: ignore[attr-defined]
        return wrapped
