"""What teardown reports: its actions, the report, and its error."""

from dataclasses import dataclass, field

from pwgen.errors import PwgenError


class TeardownError(PwgenError):
    """`pwgen teardown --run ID` names no run, or a run that is still running."""


@dataclass
class Action:
    """One thing teardown did (or failed to do)."""

    run_id: str  # "" when it concerns no single run (a site's master)
    where: str  # "here" or a site label
    what: str
    ok: bool = True
    detail: str = ""


@dataclass
class TeardownReport:
    actions: list[Action] = field(default_factory=list)
    torn_down: list[str] = field(default_factory=list)  # runs whose manifest was marked
    notes: list[str] = field(default_factory=list)  # what was left alone, and why
    kept_masters: list[int] = field(default_factory=list)  # pids of masters left running

    @property
    def clean(self) -> bool:
        """Nothing failed: every run looked at is torn down."""
        return all(action.ok for action in self.actions)
