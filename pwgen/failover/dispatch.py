"""The submit hook: where a task may go, where it goes first, and how its bash runs.

`attach(failover, dfk)` wraps `dfk.submit` (the call every Parsl app makes; replaced
through pwgen.parsl_internals) to:

- record the sites the app allows (its `executors=`), which the DFK forgets and
  `Failover` needs to move the task later;
- steer the first try away from sites that are avoided, abandoned or in bad state,
  when the app allows a healthy one (Parsl would pick at random among all);
- resolve a bash app's relative stdout/stderr paths at the call, as Parsl would
  locally (pwgen.staging.streams brings them back from the site);
- run bash apps that have a `walltime` through `pwgen_worker.run_bash`, which kills
  the command's process group on timeout (Parsl's runner leaves it running);
- tell `Failover` when each task reaches its final state.
"""

import difflib
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import pwgen_worker
from pwgen.errors import PwgenError
from pwgen.failover.policy import Failover
from pwgen.parsl_internals import (
    INTERNAL_EXECUTOR,
    Submit,
    bash_command_call,
    replace_submit,
    with_bash_runner,
)
from pwgen.staging.streams import streams_made_absolute


def attach(failover: Failover, dfk: Any) -> None:
    """Route every `dfk.submit` of this DFK through `failover`."""
    replace_submit(dfk, functools.partial(_with_failover, failover, dfk))


def _with_failover(failover: Failover, dfk: Any, submit: Submit) -> Submit:
    """`submit` (the DFK's own), with failover's choices and records around it."""

    def submit_with_failover(
        func: Callable[..., Any],
        app_args: Sequence[Any],
        executors: str | Sequence[str] = "all",
        cache: bool = False,
        ignore_for_cache: Sequence[str] | None = None,
        app_kwargs: dict[str, Any] | None = None,
        join: bool = False,
    ) -> Future[Any]:
        app_kwargs = {} if app_kwargs is None else app_kwargs
        streams_made_absolute(app_kwargs)
        allowed = _allowed_sites(dfk, executors)
        first_choice = [label for label in allowed if failover.available(dfk, label)] or allowed
        with failover.submitting(allowed):
            future: Future[Any] = submit(
                with_process_group_kill(func, app_kwargs),
                app_args,
                executors=first_choice,
                cache=cache,
                ignore_for_cache=ignore_for_cache,
                app_kwargs=app_kwargs,
                join=join,
            )
        record = future.task_record  # type: ignore[attr-defined]  # an AppFuture
        failover.record_allowed(record["id"], allowed)
        future.add_done_callback(functools.partial(_task_done, failover, record))
        return future

    return submit_with_failover


def with_process_group_kill(func: Callable[..., Any], app_kwargs: dict[str, Any]) -> Any:
    """A bash app's task function, with pwgen's runner when it has a walltime."""
    if app_kwargs.get("walltime") is None or bash_command_call(func) is None:
        return func
    return with_bash_runner(func, pwgen_worker.run_bash)


class UnknownSite(PwgenError, ValueError):
    """An app names a site (`executors=[...]`) the run does not have."""

    #: pwgen_script prints it as one line (where in the workflow, and this message).
    workflow_error_line = True


def _allowed_sites(dfk: Any, executors: str | Sequence[str]) -> list[str]:
    sites = [label for label in dfk.executors if label != INTERNAL_EXECUTOR]
    if isinstance(executors, str):  # Parsl accepts only 'all' here
        return sites
    for label in executors:
        if label not in dfk.executors:
            close = difflib.get_close_matches(str(label), sites, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownSite(
                f"executors=[...] names {label!r}, not a site of this run{hint}; "
                f"the sites: {', '.join(sites)}"
            )
    return list(executors)


def _task_done(failover: Failover, task_record: Any, future: Future[Any]) -> None:
    failover.task_done(task_record, succeeded=not future.cancelled() and future.exception() is None)
