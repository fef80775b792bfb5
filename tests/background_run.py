"""`pwgen run` of a workflow in the background, for lab tests that act on it mid-run."""

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from helpers import PWGEN

from pwgen.poll import poll
from pwgen.tunnels.links import established_to_loopback


class BackgroundRun:
    """`pwgen run WORKFLOW --sites SITES OPTIONS -- ARGS` in `project`; stderr to a file,
    stdout read line by line (`wait_for_line`) or at the end (`finish`)."""

    def __init__(
        self, project: Path, workflow: str, sites: str, options: list[str], args: list[str]
    ) -> None:
        self.project = project
        self.stderr = project / f"run-{time.monotonic_ns()}.stderr"
        argv = [str(PWGEN), "run", workflow, "--sites", sites, *options, "--", *args]
        with self.stderr.open("w") as err:
            self.proc = subprocess.Popen(
                argv, cwd=project, stdout=subprocess.PIPE, stderr=err, text=True
            )

    def wait_for_line(self, text: str, timeout: float = 180) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            if line.strip() == text:
                return
            assert time.monotonic() < deadline, f"no {text!r} line in time"
        raise AssertionError(f"run ended before {text!r}: {self.stderr.read_text()}")

    def finish(self, timeout: float = 400) -> str:
        """The rest of stdout, once the run exited 0 (Ctrl-C'ed if it outlives `timeout`)."""
        try:
            stdout, _ = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, self.stderr.read_text()
        return stdout

    def wait_until_watched(self, label: str, timeout: float = 60) -> None:
        """Until the site's workers are connected here (through its tunnel's worker port)
        and the run's site watch, which checks every 0.2 s until it has counted a site's
        new connections, has had 1 s to count them: a loss after this is one it sees."""
        tunnel_up = rf"site {label}: tunnel up: \S+ -> 127\.0\.0\.1:(\d+) here"

        def worker_port() -> int | None:
            found = re.search(tunnel_up, (self.run_dir() / "pwgen.log").read_text())
            return int(found[1]) if found else None

        port = poll(worker_port, timeout)
        assert port is not None, f"no tunnel for {label} in time"
        assert poll(lambda: (established_to_loopback([port]) or {}).get(port), timeout)
        time.sleep(1)

    def run_dir(self) -> Path:
        runs = self.project / ".pwgen" / "runs"
        return max(runs.iterdir(), key=lambda p: p.stat().st_mtime)

    def manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads((self.run_dir() / "manifest.json").read_text())
        return manifest
