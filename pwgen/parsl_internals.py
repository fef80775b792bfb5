"""The Parsl internals pwgen relies on: each named here, checked against the installed Parsl.

Each private attribute, replaced method, overridden private method or naming convention
of Parsl that pwgen depends on is a row of `pwgen.parsl_checks.ASSUMPTIONS`, and every
use of one goes through a small function below (no other pwgen module names a Parsl
private attribute; the checks' probes do, to check them). Overrides of private methods
stay in their subclass (`pwgen.executors.site`, `pwgen.providers.remote`) and are rows
there too, so they are checked. tests/test_parsl_internals.py runs the checks, and finds
uses and overrides of Parsl private names elsewhere in pwgen.
"""

import functools
import importlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from pwgen.errors import PwgenError

#: Label of the DataFlowKernel's own thread pool (joins, controller-side staging).
INTERNAL_EXECUTOR = "_parsl_internal"
#: Keyword that tells the DFK not to stage a task's Files (a staging task's own).
STAGING_INHIBIT = "_parsl_staging_inhibit"

Submit = Callable[..., Any]


class ParslInternalsError(PwgenError):
    """The installed Parsl lacks an internal pwgen relies on."""


# --- the uses: one function per internal ----------------------------------------------


def replace_submit(dfk: Any, wrap: Callable[[Submit], Submit]) -> None:
    """Route every app call of `dfk` through `wrap(original submit)`.

    Relies on: `DataFlowKernel.submit` is a plain method that `PythonApp` and `BashApp`
    look up on the DFK instance at each call, so an instance attribute replaces it
    (pwgen.failover.dispatch: allowed sites, first choice, bash walltime).
    """
    dfk.submit = wrap(dfk.submit)


def replace_launch_task(dfk: Any, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Route every try's launch of `dfk` through `wrap(original launch_task)`.

    Relies on: `_launch_if_ready_async` calls `self.launch_task(task_record)` on the
    instance and takes whatever Future it returns (pwgen.placement holds tasks there).
    """
    dfk.launch_task = wrap(dfk.launch_task)


def bash_command_call(func: Callable[..., Any]) -> functools.partial[Any] | None:
    """The `partial(remote_side_bash_executor, app_function)` inside a bash app's task
    function (None for any other function).

    Relies on: `BashApp` submits `wrap_error(partial(remote_side_bash_executor, func))`,
    and `wrap_error` keeps the partial as `__wrapped__` (functools.wraps).
    """
    inner = getattr(func, "__wrapped__", None)
    if isinstance(inner, functools.partial) and inner.func is bash_executor():
        return inner
    return None


def with_bash_runner(func: Callable[..., Any], runner: Callable[..., Any]) -> Callable[..., Any]:
    """A bash app's task function `func` whose command runs through `runner`, which takes
    `remote_side_bash_executor`'s arguments (pwgen_worker.run_bash kills the command's
    process group on timeout; Parsl's runner leaves it running)."""
    inner = bash_command_call(func)
    if inner is None:
        raise TypeError(f"{func!r} is not a bash app's task function")
    call = functools.partial(runner, *inner.args, **inner.keywords)
    call.__name__ = func.__name__  # type: ignore[attr-defined]  # as Parsl names its own
    wrapped: Callable[..., Any] = resolve("parsl.app.errors.wrap_error")(call)
    return wrapped


def add_executors(config: Any, executors: Sequence[Any], replacing: Sequence[str] = ()) -> None:
    """Add `executors` to a constructed `Config` (pwgen's stand-ins for unreachable
    sites, pwgen.failover.unavailable), first taking out those labelled `replacing`,
    with Config's own label check run again.

    Relies on: `Config.executors` is a read-only property over `Config._executors`, and
    `Config._validate_executors()` checks the labels.
    """
    kept = [executor for executor in config.executors if executor.label not in replacing]
    config._executors = (*kept, *executors)
    config._validate_executors()


def set_bad_state(executor: Any, exception: Exception) -> None:
    """Mark `executor` bad, as `set_bad_state_and_fail_all` does, but leave its tasks
    alone (pwgen.executors.site fails a snapshot of them, safely from another thread).

    Relies on: `BlockProviderExecutor._executor_exception` (read by the public
    `executor_exception`) and `_executor_bad_state`, a threading.Event read by
    `bad_state_is_set`.
    """
    executor._executor_exception = exception
    executor._executor_bad_state.set()


def replace_task_future(executor: Any, task_id: int, future: Future[Any]) -> None:
    """Put `future` where the executor delivers task `task_id`'s result (a late result of
    a try pwgen already failed lands there, unseen; pwgen.failover.watch).

    Relies on: the public `tasks` property returns the live `_tasks` dict that HTEX's
    result thread pops futures from.
    """
    executor.tasks[task_id] = future


def internal_task(dfk: Any, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` as an app on the DFK's own thread pool, its Files not staged again: how
    Parsl's own staging providers run their transfers (pwgen.staging.files). `func` must
    accept `**kwargs`: it is called with the inhibiting keyword.

    Relies on: the DFK's internal executor label, and the keyword its
    `check_staging_inhibited` looks for.
    """
    from parsl.app.app import python_app

    app = python_app(executors=[INTERNAL_EXECUTOR], data_flow_kernel=dfk)(func)
    return functools.partial(app, **{STAGING_INHIBIT: True})


def default_interchange_launch_cmd() -> list[str]:
    """HTEX's default `interchange_launch_cmd` (pwgen.executors.site runs the interchange
    in its own session when the user kept the default)."""
    command: list[str] = resolve(f"{HTEX_MODULE}.DEFAULT_INTERCHANGE_LAUNCH_CMD")
    return list(command)


HTEX_MODULE = "parsl.executors.high_throughput.executor"


def bash_executor() -> Any:
    return resolve("parsl.app.bash.remote_side_bash_executor")


@functools.cache
def resolve(path: str) -> Any:
    """The module, or the attribute of a module, named by a dotted path."""
    module, _, name = path.rpartition(".")
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as err:
        if not module or err.name != path:  # a module on the way is missing
            raise
        return getattr(resolve(module), name)
