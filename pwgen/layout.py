"""The layout of pwgen's working state, `.pwgen/` under the current directory.

Every path below the state dir is named here and nowhere else:

    .pwgen/facts/<label>.json        what provisioning found on a site (pwgen.facts)
    .pwgen/ssh/config, known_hosts   pwgen's OpenSSH client config and pinned keys (pwgen.ssh)
    .pwgen/wheelhouse/               the Parsl lock's wheels per site platform (pwgen.lock)
    .pwgen/runs/<id>/                one run (pwgen.manifest, pwgen.run):
        manifest.json                   what the run did (pwgen.manifest.RunManifest)
        parsl_config.py                 the config it loaded (or shipped, for a flux site)
        runinfo/                        Parsl's run dir
        pwgen.log                       pwgen's own log records
        monitoring.db                   Parsl monitoring (`pwgen run --monitor`)
        checkpoint.log                  results of the tasks that ended (pwgen.resume)
        teardown.log, teardown.lock     the teardown after the controller died (pwgen.teardown)
    .pwgen/runinfo/                  Parsl's run dir of a config from `pwgen config`
    .pwgen/lab/                      the default state dir of `pwgen lab`

Only paths: nothing here touches the filesystem.
"""

from dataclasses import dataclass
from pathlib import Path

#: The state dir of a project: relative, so it follows the current directory.
DEFAULT_STATE_DIR = Path(".pwgen")


def facts_file_in(facts_dir: Path, label: str) -> Path:
    """A site's facts file in `facts_dir` (the state's, or one a caller or test names)."""
    return facts_dir / f"{label}.json"


@dataclass(frozen=True)
class RunLayout:
    """The files of one run dir, `<state>/runs/<id>/`."""

    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def manifest(self) -> Path:
        return self.path / "manifest.json"

    @property
    def config(self) -> Path:
        return self.path / "parsl_config.py"

    @property
    def runinfo(self) -> Path:
        return self.path / "runinfo"

    @property
    def log(self) -> Path:
        return self.path / "pwgen.log"

    @property
    def monitoring_db(self) -> Path:
        return self.path / "monitoring.db"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.log"

    @property
    def orphan_log(self) -> Path:
        """What the teardown started by an orphaned interchange's guard did."""
        return self.path / "teardown.log"

    @property
    def teardown_lock(self) -> Path:
        return self.path / "teardown.lock"


@dataclass(frozen=True)
class StateLayout:
    """Every path of the working state below `root`."""

    root: Path = DEFAULT_STATE_DIR

    @property
    def facts_dir(self) -> Path:
        return self.root / "facts"

    def facts_file(self, label: str) -> Path:
        return facts_file_in(self.facts_dir, label)

    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    @property
    def ssh_config(self) -> Path:
        return self.ssh_dir / "config"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def wheelhouse_dir(self) -> Path:
        return self.root / "wheelhouse"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run(self, run_id: str) -> RunLayout:
        return RunLayout(self.runs_dir / run_id)

    @property
    def runinfo_dir(self) -> Path:
        """Parsl's run dir for a config written by `pwgen config` (not a `pwgen run`)."""
        return self.root / "runinfo"

    @property
    def lab_dir(self) -> Path:
        return self.root / "lab"
