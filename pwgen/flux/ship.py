"""Shipping a site-side run: its files as one tar stream, unpacked into a new run directory."""

import subprocess

from pwgen.errors import PwgenError
from pwgen.flux.plan import SiteRunPlan
from pwgen.ssh import SshSetup

SHIP_TIMEOUT = 300


class SiteRunError(PwgenError):
    """A site-side run could not be shipped to or started on its site."""


def ship(plan: SiteRunPlan, ssh: SshSetup) -> None:
    """Create the run directory on the site and unpack the run's files into it."""
    try:
        done = subprocess.run(
            ssh.argv(plan.label, plan.ship_command()),
            input=plan.tarball(),
            capture_output=True,
            timeout=SHIP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SiteRunError(
            f"site {plan.label!r}: shipping the run to {plan.remote_dir} took over {SHIP_TIMEOUT} s"
        ) from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise SiteRunError(
            f"site {plan.label!r}: cannot ship the run to {plan.remote_dir}: "
            f"{reason[-1] if reason else f'ssh exited {done.returncode}'}"
        )
