"""How a site's block starts its worker pool: Parsl's launch command, lean.

Parsl's `process_worker_pool.py` imports `parsl`, whose package __init__ brings the
DataFlowKernel, every executor and the monitoring hub: 0.45 s on a compute node before
the pool even connects (0.12 s without). `lean_worker_pool(python)` is Parsl's own
launch command, run by the site env's `python -m pwgen_worker run` (the pwgen.hpc.relay
role installs pwgen_worker), which skips those imports (pwgen_worker.run_script).
"""

import shlex

from parsl.executors.high_throughput.executor import DEFAULT_LAUNCH_CMD

from pwgen_worker import POOL_SCRIPT


def lean_worker_pool(python: str) -> str:
    """Parsl's default HTEX launch command with its worker pool run by `python` (the
    site env's interpreter, an absolute path) through pwgen_worker."""
    if not python.startswith("/"):
        raise ValueError(f"python {python!r}: expected the env's interpreter, an absolute path")
    if not DEFAULT_LAUNCH_CMD.startswith(f"{POOL_SCRIPT} "):
        return DEFAULT_LAUNCH_CMD  # a Parsl that launches its pool otherwise: as it does
    # The command is a format string (Parsl fills in {debug}, {cert_dir}, ...).
    runner = shlex.quote(python).replace("{", "{{").replace("}", "}}")
    return f"{runner} -m pwgen_worker run {DEFAULT_LAUNCH_CMD}"
