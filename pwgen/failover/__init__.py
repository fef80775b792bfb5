"""Failover for `pwgen run`: tasks move off failing sites; see each module for one part.

policy.py       Failover, the retry_handler: site-level failure -> another site
health.py       SiteHealth: avoid a site after K failures, re-admit after a cool-down
errors.py       which failures are the site's fault; pwgen's own site failures
dispatch.py     the submit hook: allowed sites per task, first choice, bash walltime
watch.py        SiteWatch: queue-wait budget, tasks lost in a broken tunnel
unavailable.py  the stand-in executor for a site unreachable at the start
defaults.py     the option defaults (K, cool-down, queue-wait budget, free site retries)

The names below are imported on first use: `pwgen.failover.defaults` (read by the CLI
at startup) must not load Parsl.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pwgen.failover.dispatch import attach
    from pwgen.failover.errors import (
        PresumedLost,
        QueueWaitExceeded,
        SiteFailure,
        SiteUnavailable,
        is_site_failure,
    )
    from pwgen.failover.health import SiteHealth
    from pwgen.failover.policy import Failover
    from pwgen.failover.unavailable import UnavailableExecutor
    from pwgen.failover.watch import SiteWatch

#: Each public name and the module that defines it.
_HOMES = {
    "Failover": "policy",
    "PresumedLost": "errors",
    "QueueWaitExceeded": "errors",
    "SiteFailure": "errors",
    "SiteHealth": "health",
    "SiteUnavailable": "errors",
    "SiteWatch": "watch",
    "UnavailableExecutor": "unavailable",
    "attach": "dispatch",
    "is_site_failure": "errors",
}

__all__ = [
    "Failover",
    "PresumedLost",
    "QueueWaitExceeded",
    "SiteFailure",
    "SiteHealth",
    "SiteUnavailable",
    "SiteWatch",
    "UnavailableExecutor",
    "attach",
    "is_site_failure",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
