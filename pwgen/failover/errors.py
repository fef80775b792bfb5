"""Which task failures are the site's fault (move the task) and which are the app's (retry).

A site-level failure says nothing about the task: a lost manager or worker, an
executor in bad state, a block that could not be scaled out, a site pwgen gave up on.
Everything else (the app's own exceptions, AppTimeout, a bash exit code) is the
application's, retried in place under the user's `retries`.
"""

from parsl.executors.errors import BadStateException, ScalingFailed
from parsl.executors.high_throughput.errors import (
    CommandClientTimeoutError,
    ManagerLost,
    WorkerLost,
)


class SiteFailure(Exception):
    """Base of pwgen's own site-level task failures."""

    def __init__(self, site: str, reason: str) -> None:
        super().__init__(f"site {site}: {reason}")
        self.site = site
        self.reason = reason

    def __reduce__(self) -> tuple[type["SiteFailure"], tuple[str, str]]:
        return type(self), (self.site, self.reason)


class SiteUnavailable(SiteFailure):
    """The site could not be reached when the run started."""


class QueueWaitExceeded(SiteFailure):
    """The site's blocks stayed pending longer than the queue-wait budget."""


class SiteLost(SiteFailure):
    """Every worker of the site vanished with work outstanding (pwgen.failover.loss)."""


class PresumedLost(SiteFailure):
    """The task was in flight when the site's tunnel broke and never came back."""


SITE_LEVEL_ERRORS: tuple[type[BaseException], ...] = (
    ManagerLost,
    WorkerLost,
    BadStateException,
    ScalingFailed,
    CommandClientTimeoutError,
    SiteFailure,
)


def is_site_failure(error: BaseException) -> bool:
    """True when `error` is the site's fault rather than the app's."""
    return isinstance(error, SITE_LEVEL_ERRORS)
