"""Calls to a site's login node over ssh, never starting a master."""

from collections.abc import Iterable
from pathlib import Path

from pwgen.status.probe import SiteProbe, parse_probe, probe_script
from pwgen.tunnels.master import ControlMaster

#: ssh ConnectTimeout for status and teardown calls, in seconds.
CONNECT_TIMEOUT = 5
#: Seconds a remote status probe may take on the site.
PROBE_TIMEOUT = 10


def site_master(ssh_config: Path, label: str) -> ControlMaster:
    """The site's master as pwgen's tunnels see it (never started by status/teardown)."""
    return ControlMaster(
        ssh_config=str(ssh_config.resolve()),
        host=label,
        connect_timeout=CONNECT_TIMEOUT,
        log_file=None,
    )


def run_on_site(ssh_config: Path, label: str, script: str, timeout: float) -> tuple[int, str, str]:
    """Run `script` on the login node through its master if one runs, else directly.

    `ControlMaster=no`: never becomes a master. (exit, stdout, stderr); 255: ssh failed.
    """
    return site_master(ssh_config, label).run(script, timeout=timeout)


def probe_site(
    ssh_config: Path, label: str, scheduler: str, site_dirs: Iterable[str] = ()
) -> SiteProbe:
    """Jobs, relays, pools, listeners and cert copies on one site; never raises."""
    try:
        code, out, err = run_on_site(
            ssh_config, label, probe_script(scheduler, site_dirs), PROBE_TIMEOUT
        )
    except OSError as err_:
        return SiteProbe(ok=False, error=f"cannot run ssh: {err_}")
    probe = parse_probe(out, scheduler)
    if code != 0 or not probe.ok:
        detail = " ".join(err.split()[-30:]) or f"exit {code}"
        probe.ok = False
        probe.error = f"unreachable: {detail}"
    return probe


def master_pid(ssh_config: Path, label: str) -> int | None:
    """The pid of the site's running ssh master (`ssh -O check`), else None."""
    if not ssh_config.is_file():
        return None
    try:
        return site_master(ssh_config, label).pid()
    except OSError:
        return None
