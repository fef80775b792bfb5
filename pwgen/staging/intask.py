"""What runs on the worker, inside the task: wrappers around the task function.

A site has Parsl but not pwgen, and Parsl ships a function of an importable module by
reference (the worker imports the module). So every function here is made
`portable`: rebound to globals that hold only the builtins, which makes dill ship its
code by value; it imports what it needs (stdlib, Parsl) in its body, and the helpers
it calls travel in its closure. Errors are builtin exception types, so they unpickle
on the controller too.

Each wrapper calls the task function it wraps (`func`, itself possibly a wrapper) and
is what Parsl runs instead (a Staging provider's `replace_task*`).
"""

import builtins
import types
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: Environment variables that choose the CLI on a site (set them in its worker_init).
CLI_VARIABLES = {"s3": "PWGEN_S3_CLI", "gs": "PWGEN_GS_CLI"}
#: The CLI used when neither the provider nor the site chooses one.
DEFAULT_CLIS = {"s3": "aws", "gs": "gcloud"}


def portable(function: F, name: str | None = None) -> F:
    """The same function (code, defaults, closure) with builtins-only globals."""
    rebound = types.FunctionType(
        function.__code__,
        {"__builtins__": builtins},
        name or function.__name__,
        function.__defaults__,
        function.__closure__,
    )
    rebound.__kwdefaults__ = function.__kwdefaults__
    return rebound  # type: ignore[return-value]  # same signature as `function`


def _task_name(func: Callable[..., Any]) -> str:
    return getattr(func, "__name__", "task")


# --- file:// (the data was copied by the controller) ----------------------------------


def require_staged_input(func: Callable[..., Any], local_path: str, origin: str) -> Any:
    """Fail clearly when the staged copy of an input is not where the task runs."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import os
        import socket

        if not os.path.exists(local_path):
            raise FileNotFoundError(
                f"staged input {local_path} (copied from {origin}) is not on "
                f"{socket.gethostname()}: the task runs on another site than the one its "
                "input was staged to (moved there after a failure?), or the site's work "
                "dir is not shared with its compute nodes"
            )
        return func(*args, **kwargs)

    return portable(wrapper, _task_name(func))


def make_output_parent(func: Callable[..., Any], local_path: str) -> Any:
    """Create the directory the task writes an output into, before the task runs."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import os

        os.makedirs(os.path.dirname(local_path), exist_ok=True)
        return func(*args, **kwargs)

    return portable(wrapper, _task_name(func))


# --- s3:// and gs:// (copied by a CLI on the worker) ----------------------------------


def cli_argv(cli: str, scheme: str, source: str, destination: str, directory: bool) -> list[str]:
    """The copy command of a cloud CLI: an object with `cp`, a prefix with a sync."""
    kind = cli.rsplit("/", 1)[-1]
    if scheme == "s3" and kind == "aws":
        return [cli, "s3", "sync" if directory else "cp", source, destination]
    if scheme == "gs" and kind == "gcloud":
        verb = ["storage", "rsync", "--recursive"] if directory else ["storage", "cp"]
        return [cli, *verb, source, destination]
    if scheme == "gs" and kind == "gsutil":
        verb = ["-m", "rsync", "-r"] if directory else ["cp"]
        return [cli, *verb, source, destination]
    wanted = "aws" if scheme == "s3" else "gcloud or gsutil"
    raise ValueError(f"{scheme}:// files need the {wanted} CLI, not {cli!r}")


def run_cli(argv: list[str], what: str, environment: dict[str, str] | None = None) -> None:
    """Run a CLI copy (in `environment`, else the worker's); raise with the CLI's own
    message when it fails."""
    import shlex
    import subprocess

    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=environment
        )
    except OSError as err:
        raise RuntimeError(
            f"{what} failed: cannot run {argv[0]} on this worker ({err}); put it on PATH in "
            "the site's worker_init, or choose another CLI"
        ) from None
    if done.returncode != 0:
        message = " | ".join(
            line for line in (done.stderr.strip() or done.stdout.strip()).splitlines() if line
        )
        raise RuntimeError(
            f"{what} failed: `{shlex.join(argv)}` exited {done.returncode}: "
            f"{message or 'no message'}"
        )


def cli_environment(settings: dict[str, str | None], what: str) -> dict[str, str]:
    """The worker's environment with an object store's settings (None: removed); its
    credentials file, when it names one, must be on this worker."""
    import os
    import socket

    keys = settings.get("AWS_SHARED_CREDENTIALS_FILE")
    if keys is not None and not os.path.exists(keys):
        raise FileNotFoundError(
            f"{what} failed: the object store's keys {keys} are not on {socket.gethostname()}: "
            "the task runs on another site than the one they were written to, or the "
            "site's work dir is not shared with its compute nodes"
        )
    environment = {name: value for name, value in os.environ.items() if name not in settings}
    environment.update((name, value) for name, value in settings.items() if value is not None)
    return environment


def cloud_copier(
    cli: str | None, scheme: str, settings: dict[str, str | None] | None = None
) -> Callable[[str, str, bool, str], None]:
    """A portable `copy(source, destination, directory, what)` with the CLI chosen on the
    worker: `cli` (the provider's), else the site's variable, else the default; run with
    the object store's `settings` in its environment (pwgen.objectstore)."""
    argv_for, run = portable(cli_argv), portable(run_cli)
    environment_for = portable(cli_environment)
    variable, default = CLI_VARIABLES[scheme], DEFAULT_CLIS[scheme]

    def copy(source: str, destination: str, directory: bool, what: str) -> None:
        import os

        chosen = cli or os.environ.get(variable) or default
        environment = None if settings is None else environment_for(settings, what)
        run(argv_for(chosen, scheme, source, destination, directory), what, environment)

    return portable(copy)


def cloud_stage_in(
    func: Callable[..., Any],
    *,
    url: str,
    scheme: str,
    local_path: str,
    directory: bool,
    cli: str | None,
    settings: dict[str, str | None] | None = None,
) -> Any:
    """Download an object (or a prefix, `directory`) before the task; remove it after."""
    copy = cloud_copier(cli, scheme, settings)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import os
        import shutil

        task_dir = os.path.dirname(local_path)
        os.makedirs(local_path if directory else task_dir, exist_ok=True)
        try:
            copy(url, local_path, directory, f"stage-in of {url} to {local_path}")
            return func(*args, **kwargs)
        finally:
            shutil.rmtree(task_dir, ignore_errors=True)

    return portable(wrapper, _task_name(func))


def cloud_stage_out(
    func: Callable[..., Any],
    *,
    url: str,
    scheme: str,
    local_path: str,
    cli: str | None,
    settings: dict[str, str | None] | None = None,
) -> Any:
    """Upload what the task wrote (a file, or a directory to a prefix); remove it after."""
    copy = cloud_copier(cli, scheme, settings)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import os
        import shutil

        from parsl.app.errors import RemoteExceptionWrapper

        task_dir = os.path.dirname(local_path)
        os.makedirs(task_dir, exist_ok=True)
        try:
            result = func(*args, **kwargs)
            if isinstance(result, RemoteExceptionWrapper):
                return result  # the app failed: nothing to upload
            if not os.path.exists(local_path):
                raise FileNotFoundError(
                    f"stage-out of {local_path} to {url} failed: the task wrote nothing there"
                )
            directory = os.path.isdir(local_path)
            copy(local_path, url, directory, f"stage-out of {local_path} to {url}")
            return result
        finally:
            shutil.rmtree(task_dir, ignore_errors=True)

    return portable(wrapper, _task_name(func))
