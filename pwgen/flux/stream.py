"""Running the shipped workflow, its output streamed here; Ctrl-C / SIGTERM stop it remotely."""

import subprocess
import sys

from pwgen.flux.plan import SiteRunPlan
from pwgen.flux.remote import remote
from pwgen.flux.signals import signals_as_interrupt
from pwgen.poll import poll
from pwgen.ssh import SshSetup
from pwgen_script import EXIT_INTERRUPTED

#: Seconds the remote run gets to tear itself down after SIGTERM before SIGKILL.
GRACE_SECONDS = 30.0
#: Seconds to wait for the launcher's pgid file after an early Ctrl-C.
PGID_WAIT_SECONDS = 10.0


def stream(plan: SiteRunPlan, ssh: SshSetup, grace: float = GRACE_SECONDS) -> int:
    """Run the shipped workflow; its output goes to this process's stdout and stderr.

    Returns the remote exit code, or 130 after Ctrl-C / SIGTERM (which end the remote
    run: SIGTERM to its process group, SIGKILL after `grace` s or a second Ctrl-C).
    """
    with signals_as_interrupt():
        # Its own session: the terminal's Ctrl-C reaches pwgen, not the ssh client, so
        # the remote teardown's output still comes back through it.
        proc = subprocess.Popen(
            ssh.argv(plan.label, plan.run_command()),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            return proc.wait()
        except KeyboardInterrupt:
            pass
        print(f"pwgen: interrupted; stopping the run on {plan.label}", file=sys.stderr)
        try:
            _stop(plan, ssh, proc, grace)
        except KeyboardInterrupt:
            print("pwgen: interrupted again; killing the run", file=sys.stderr)
        if proc.poll() is None:
            remote(ssh, plan.label, plan.signal_command("KILL"))
            try:
                proc.wait(5)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                proc.kill()
                proc.wait()
    return EXIT_INTERRUPTED


def _stop(plan: SiteRunPlan, ssh: SshSetup, proc: "subprocess.Popen[bytes]", grace: float) -> None:
    """SIGTERM to the remote group (once the launcher has written it), then wait `grace` s."""

    def signalled() -> bool:
        """The run has ended, or its group got SIGTERM (fails until the pgid file exists)."""
        return proc.poll() is not None or remote(ssh, plan.label, plan.signal_command("TERM")) == 0

    if not poll(signalled, PGID_WAIT_SECONDS, interval=0.2):
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        print(f"pwgen: the run on {plan.label} did not stop in {grace:g} s", file=sys.stderr)
