"""Running a workflow script as `python workflow.py` would, and the exit codes of a run.

Shared by `pwgen run` (pwgen.run) and the site-side launcher that a Flux site runs
(pwgen/flux/site_run.py, shipped as pwgen_site_run.py). Standard library only: it is
shipped beside the launcher to login nodes where pwgen is not installed, so it is a
top-level module (like pwgen_worker), imported by the same name on both sides.
"""

import os
import runpy
import sys
import traceback
from collections.abc import Sequence

EXIT_WORKFLOW_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def run_script(workflow: str | os.PathLike[str], args: Sequence[str], program: str) -> int:
    """Run the script as `__main__`; its exceptions become exit code 1 with its traceback.

    `sys.argv` and `sys.path[0]` are the script's while it runs (restored after).
    `program` starts the lines this prints about the script (`pwgen`, `pwgen-site`).
    KeyboardInterrupt passes through: the caller tears down.
    """
    path = os.fspath(workflow)
    saved_argv, saved_path0 = sys.argv[:], sys.path[0]
    sys.argv = [path, *args]
    sys.path[0] = os.path.dirname(os.path.realpath(path))
    try:
        runpy.run_path(path, run_name="__main__")
        return 0
    except SystemExit as exit_:
        return exit_code_of(exit_)
    except KeyboardInterrupt:
        raise
    except Exception as error:
        if getattr(error, "workflow_error_line", False):  # a misuse pwgen names itself
            print(f"{program}: {_where(error, path)}: {error}", file=sys.stderr)
            return EXIT_WORKFLOW_FAILED
        _print_workflow_traceback(error, path)
        print(f"{program}: workflow {path} failed", file=sys.stderr)
        if "already been loaded" in str(error):
            hint = "`pwgen run` loads the config itself; remove parsl.load()"
            print(f"{program}: hint: {hint}", file=sys.stderr)
        return EXIT_WORKFLOW_FAILED
    finally:
        sys.argv, sys.path[0] = saved_argv, saved_path0


def exit_code_of(exit_: SystemExit) -> int:
    """The exit code `python workflow.py` would exit with after this `sys.exit()`."""
    if exit_.code is None:
        return 0
    if isinstance(exit_.code, int):
        return exit_.code
    print(exit_.code, file=sys.stderr)
    return EXIT_WORKFLOW_FAILED


def _where(error: Exception, path: str) -> str:
    """`workflow.py:LINE`, the workflow's last line in the error's traceback."""
    line = None
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"{path}:{line}" if line is not None else path


def _print_workflow_traceback(error: Exception, path: str) -> None:
    """The traceback from the workflow's first frame on: the runner's frames are left out."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != path:
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb)
