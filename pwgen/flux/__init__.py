"""Site-side runs: a `flux` site's workflow runs on the site's login node, not here.

Parsl's FluxExecutor must run next to flux-core, with its working directory on a
filesystem the compute nodes share, and its Flux instance connects back to it on a
random port (DESIGN.md, "FluxExecutor facts"). So for a `flux` site `pwgen run` does
not start a DataFlowKernel here: it ships the run to the login node and runs it there,
in the pinned env, streaming the output back.

    .pwgen/runs/<id>/                     here: the shipped config and manifest.json
    <workdir>/<id>/                       on the site (0700; workdir is in the facts,
        workflow.py, extra files             on the filesystem shared with the compute
        parsl_config.py                      nodes): what was shipped, one tar stream
        pwgen_site_run.py                    (`tar -x`) through the site's ssh master
        pgid, runinfo/, flux/             written by the run

and then, over the same master, without a pty:

    cd <workdir>/<id> && exec setsid -w <env>/bin/python -u pwgen_site_run.py workflow.py ARGS

`pwgen_site_run.py` (`SITE_RUNNER` below: stdlib + parsl only) records its process group
in `pgid`, puts `<env>/bin` (flux) first on PATH, loads `parsl_config.py`, runs the
workflow as `__main__` with its args and cleans the DataFlowKernel up whatever happens,
as `pwgen run` does for a controller-side run. Its output is the ssh stream's, so it
reaches this terminal live, and its exit code is the one `pwgen run` returns.

Ctrl-C or SIGTERM here: the local ssh client runs in its own session (the terminal's
SIGINT does not cut the stream), pwgen sends SIGTERM to the remote process group
(`pwgen_site_run.py --signal TERM`), waits for the run's own teardown (its messages
still stream back), and sends SIGKILL after a grace period or a second Ctrl-C. After
every run, `pwgen_site_run.py --cleanup` kills whatever process still carries the run's
marker and `scancel`s the Slurm jobs submitted from the run directory.
"""

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

from pwgen.configgen.remote import provisioned_site
from pwgen.errors import WorkflowError
from pwgen.fileio import atomic_write
from pwgen.flux.manifest import write_manifest
from pwgen.flux.plan import (
    CONFIG_NAME,
    MARKER,
    PGID_NAME,
    RESERVED_NAMES,
    RUNNER_NAME,
    ShippedFile,
    SiteRunPlan,
    plan_site_run,
)
from pwgen.flux.remote import REMOTE_TIMEOUT, remote
from pwgen.flux.runner import SITE_RUNNER
from pwgen.flux.ship import SHIP_TIMEOUT, SiteRunError, ship
from pwgen.flux.signals import signals_ignored
from pwgen.flux.stream import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_WORKFLOW_FAILED,
    GRACE_SECONDS,
    PGID_WAIT_SECONDS,
    stream,
)
from pwgen.sites import Site
from pwgen.ssh import SshSetup

__all__ = [
    "CONFIG_NAME",
    "EXIT_BAD_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_WORKFLOW_FAILED",
    "GRACE_SECONDS",
    "MARKER",
    "PGID_NAME",
    "PGID_WAIT_SECONDS",
    "REMOTE_TIMEOUT",
    "RESERVED_NAMES",
    "RUNNER_NAME",
    "SHIP_TIMEOUT",
    "SITE_RUNNER",
    "ShippedFile",
    "SiteRunError",
    "SiteRunPlan",
    "plan_site_run",
    "run_site_side",
    "ship",
    "stream",
]


def run_site_side(
    site: Site,
    workflow: Path,
    args: Sequence[str],
    state_dir: Path,
    ssh: SshSetup,
    *,
    extra_files: Sequence[Path] = (),
    config_text: str | None = None,
    source: str = "sites.yaml",
    grace: float = GRACE_SECONDS,
) -> int:
    """Run `workflow` with `args` on the login node of a flux `site`; returns its exit code.

    Needs what `pwgen provision` left in `state_dir` (facts, ssh config) and `ssh` (see
    `pwgen.ssh.prepare_ssh`). Checks the site's Parsl and Python (PreflightError with
    the table on a mismatch), ships the run, streams its output here, and cleans the
    site up afterwards. Writes `<state_dir>/runs/<id>/manifest.json` and the shipped
    config beside it. `config_text` replaces the generated config (tests use a
    ThreadPoolExecutor config: the lab has no Flux).
    """
    import parsl  # slow import: only when a run really starts

    from pwgen.preflight import check_versions
    from pwgen.run import RunRecord, new_run_dir  # pwgen.run imports this module

    if not workflow.is_file():
        raise WorkflowError(f"{workflow}: workflow script not found")
    provisioned = provisioned_site(site, state_dir)
    run_id, run_dir = new_run_dir(state_dir)
    record = RunRecord(
        run_id=run_id,
        workflow=str(workflow),
        args=list(args),
        sites=[site.model_dump(mode="json")],
        parsl_version=parsl.__version__,
        python_version=platform.python_version(),
    )
    record.facts = {site.label: json.loads(provisioned.facts_file.read_text(encoding="utf-8"))}
    plan: SiteRunPlan | None = None
    shipped = False
    exit_code = EXIT_BAD_INPUT
    try:
        plan = plan_site_run(
            site,
            workflow,
            args,
            provisioned,
            run_id,
            config_text=config_text,
            extra_files=extra_files,
            source=source,
        )
        config = next(f for f in plan.files if f.name == CONFIG_NAME)
        atomic_write(run_dir / CONFIG_NAME, config.data.decode(), mode=0o600)
        clock = time.monotonic()
        rows = check_versions([site], state_dir, ssh)
        record.site_versions = {row.label: [row.parsl, row.python] for row in rows}
        record.timings["preflight"] = time.monotonic() - clock
        clock = time.monotonic()
        ship(plan, ssh)
        shipped = True
        record.timings["ship"] = time.monotonic() - clock
        clock = time.monotonic()
        exit_code = stream(plan, ssh, grace)
        record.timings["workflow"] = time.monotonic() - clock
    finally:
        with signals_ignored():
            if plan is not None and shipped:
                clock = time.monotonic()
                remote(ssh, plan.label, plan.cleanup_command())
                record.timings["cleanup"] = time.monotonic() - clock
            ssh.stop_master(site.label)
            write_manifest(run_dir, record, exit_code, plan)
    return exit_code
