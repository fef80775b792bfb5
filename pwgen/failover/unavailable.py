"""`UnavailableExecutor`: the stand-in for a site that was unreachable when the run started.

The run goes on with the other sites; apps that name this site still resolve, and
each task sent here fails at once with `SiteUnavailable`, which `Failover` moves to
another site the app allows (or reports, for an app pinned to this site).
"""

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from parsl.executors.base import ParslExecutor
from parsl.monitoring.radios.htex import HTEXRadio

from pwgen.failover.errors import SiteUnavailable


class UnavailableExecutor(ParslExecutor):
    """An executor whose every task fails with `SiteUnavailable(label, reason)`."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__()
        self.label = label
        self.reason = reason
        # With monitoring on, Parsl refuses to launch on an executor without a radio,
        # before our submit could say why; this one is never used.
        self.remote_monitoring_radio = HTEXRadio()

    @property
    def bad_state_is_set(self) -> bool:
        return True  # so failover never picks it

    def submit(
        self,
        func: Callable[..., Any],
        resource_specification: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> Future[Any]:
        raise SiteUnavailable(self.label, self.reason)

    def shutdown(self) -> None:
        """Nothing was started."""
