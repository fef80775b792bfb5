"""Cancelling an executor's blocks that are not finished: Parsl's cleanup skips an
executor in bad state and would leave them running (the site's shutdown, the site
watch abandoning a site and `pwgen run` after a failed run all need it)."""

import logging
from typing import Any

from parsl.jobs.states import TERMINAL_STATES

logger = logging.getLogger(__name__)


def active_jobs(executor: Any) -> list[str]:
    """The provider job ids of the executor's blocks not known to be finished."""
    status = executor.status_facade
    return [
        job
        for block, job in list(executor.blocks_to_job_id.items())
        if block not in status or status[block].state not in TERMINAL_STATES
    ]


def cancel_active_blocks(label: str, executor: Any) -> None:
    """Cancel the executor's blocks that are not finished; a failure is logged only
    (the caller keeps tearing down, and the executor's shutdown tries again)."""
    provider = getattr(executor, "provider", None)
    if provider is None:
        return
    jobs = active_jobs(executor)
    if not jobs:
        return
    logger.info("site %s: cancelling blocks still active: %s", label, jobs)
    try:
        provider.cancel(jobs)
    except Exception as err:
        logger.warning("site %s: cancelling blocks %s failed: %s", label, jobs, err)
