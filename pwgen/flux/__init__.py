"""Site-side runs: a `flux` site's workflow runs on the site's login node, not here.

Parsl's FluxExecutor must run next to flux-core, with its working directory on a
filesystem the compute nodes share, and its Flux instance connects back to it on a
random port (docs/flux.md). So for a `flux` site `pwgen run` does
not start a DataFlowKernel here: it ships the run to the login node and runs it there,
in the pinned env, streaming the output back.

    .pwgen/runs/<id>/                     here: the shipped config and manifest.json
    <workdir>/<id>/                       on the site (0700; workdir is in the facts,
        workflow.py, extra files             on the filesystem shared with the compute
        parsl_config.py                      nodes): what was shipped, one tar stream
        pwgen_site_run.py, pwgen_script.py   (`tar -x`) through the site's ssh master
        pgid, runinfo/, flux/             written by the run

and then, over the same master, without a pty:

    cd <workdir>/<id> && exec setsid -w <env>/bin/python -u pwgen_site_run.py workflow.py ARGS

`pwgen_site_run.py` (pwgen/flux/site_run.py: stdlib, parsl and pwgen_script.py only, the
module that runs a workflow for `pwgen run` too) records its process group
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

import platform
from collections.abc import Sequence
from pathlib import Path

from pwgen.configgen.remote import provisioned_site
from pwgen.errors import WorkflowError
from pwgen.fileio import atomic_write
from pwgen.flux.plan import (
    CONFIG_NAME,
    MARKER,
    PGID_NAME,
    RESERVED_NAMES,
    RUNNER_NAME,
    SCRIPT_NAME,
    ShippedFile,
    SiteRunPlan,
    plan_site_run,
)
from pwgen.flux.remote import REMOTE_TIMEOUT, remote
from pwgen.flux.ship import SHIP_TIMEOUT, SiteRunError, ship
from pwgen.flux.signals import signals_ignored
from pwgen.flux.stream import GRACE_SECONDS, PGID_WAIT_SECONDS, stream
from pwgen.layout import RunLayout
from pwgen.manifest import (
    RunManifest,
    SiteSideRun,
    facts_snapshot,
    finish_manifest,
    new_run_dir,
    start_manifest,
)
from pwgen.preflight import check_versions
from pwgen.sites import Site
from pwgen.ssh import SshSetup
from pwgen_script import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_WORKFLOW_FAILED

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
    "SCRIPT_NAME",
    "SHIP_TIMEOUT",
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
    if not workflow.is_file():
        raise WorkflowError(f"{workflow}: workflow script not found")
    provisioned = provisioned_site(site, state_dir)
    run = new_run_dir(state_dir)
    manifest = _start(run, site, workflow, args, state_dir)
    plan: SiteRunPlan | None = None
    shipped = False
    exit_code = EXIT_BAD_INPUT
    master_use = ssh.use_master(site.label)  # another run on this site keeps its master
    try:
        plan = plan_site_run(
            site,
            workflow,
            args,
            provisioned,
            run.run_id,
            config_text=config_text,
            extra_files=extra_files,
            source=source,
        )
        _keep_config(run, plan)
        _check_versions(site, state_dir, ssh, manifest)
        with manifest.timed("ship"):
            ship(plan, ssh)
            shipped = True
        with manifest.timed("workflow"):
            exit_code = stream(plan, ssh, grace)
    finally:
        with signals_ignored():
            if plan is not None and shipped:
                with manifest.timed("cleanup"):
                    remote(ssh, plan.label, plan.cleanup_command())
            ssh.done_with_master(site.label, master_use)
            _finish(run, manifest, exit_code, plan)
    return exit_code


def _start(
    run: RunLayout, site: Site, workflow: Path, args: Sequence[str], state_dir: Path
) -> RunManifest:
    import parsl  # slow import: only when a run really starts

    return start_manifest(
        run.run_id,
        workflow,
        list(args),
        sites=[site.model_dump(mode="json")],
        parsl_version=parsl.__version__,
        python_version=platform.python_version(),
        facts=facts_snapshot(state_dir, [site.label]),
    )


def _check_versions(site: Site, state_dir: Path, ssh: SshSetup, manifest: RunManifest) -> None:
    """The site's live Parsl and Python (PreflightError on a mismatch), into the manifest."""
    with manifest.timed("preflight"):
        rows = check_versions([site], state_dir, ssh)
        manifest.site_versions = {row.label: [row.parsl, row.python] for row in rows}


def _keep_config(run: RunLayout, plan: SiteRunPlan) -> None:
    """The shipped config, also in the local run dir (it may hold paths: 0600)."""
    config = next(f for f in plan.files if f.name == CONFIG_NAME)
    atomic_write(run.config, config.data.decode(), mode=0o600)


def _finish(
    run: RunLayout, manifest: RunManifest, exit_code: int, plan: SiteRunPlan | None
) -> None:
    """The manifest at the end of the run, with what was shipped where (once planned)."""
    if plan is not None:
        manifest.site_side = SiteSideRun(
            site=plan.label,
            remote_dir=plan.remote_dir,
            command=plan.run_command(),
            files=[f.name for f in plan.files],
        )
    finish_manifest(run.path, manifest, exit_code)
