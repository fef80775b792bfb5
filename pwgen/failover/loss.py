"""Site-loss detection: every worker of a site gone at once, seen in seconds.

The interchange keeps listing a killed manager until its heartbeat threshold (30 s in
the generated config), and its tasks wait until then. But each manager holds one
connection to the interchange's worker port, passed on by the relay on the login node
and the ssh forward, and a worker's end closes it here within a round trip
(pwgen.tunnels.links). So a site is declared lost when, with tasks outstanding:

- the interchange lists active managers, yet no connection to its worker port has
  been established for `confirm` seconds (and some were before: a site whose
  connections were never seen here, wherever they are, is never declared lost; the
  watch checks every 0.2 s until a new site's are counted, for at most CLOSE_FOR), and
- the tunnel supervisor found master, forward and relay healthy in a check begun after
  the connections went (a broken tunnel closes them too, and the workers reconnect
  once it is repaired; a repair starts the clock again).

CPU load delays heartbeats and results, it does not close connections: a loaded
machine cannot trigger this. A block the scheduler ends (walltime, scale-in) closes its
managers' connections too; Parsl holds managers before scaling in (no longer active),
and a drained manager leaves the interchange's list, so only workers that vanish
with work outstanding count.
"""

from dataclasses import dataclass
from typing import Any

#: Seconds with no connection (and a healthy tunnel) before a site is declared lost.
CONFIRM = 3.0
#: Seconds the watch looks closely at a site whose new managers' connections it has not
#: counted yet (a site whose connections it cannot see at all is not looked at forever).
CLOSE_FOR = 10.0


@dataclass
class _Gone:
    """Since when a site's connections have all been gone, as far as the watch knows."""

    since: float
    repairs_seen: int


class LossDetector:
    """Per-site evidence that every worker vanished; `check` says when it suffices."""

    def __init__(self, confirm: float = CONFIRM) -> None:
        if confirm <= 0:
            raise ValueError(f"confirm must be positive, not {confirm}")
        self.confirm = confirm
        self._gone: dict[str, _Gone] = {}
        self._seen: set[str] = set()  # sites whose workers' connections were counted
        # Sites listing managers whose connections were not counted yet: since when.
        self._unseen: dict[str, float] = {}

    def watching_closely(self, now: float) -> bool:
        """Whether a site has listed managers for less than CLOSE_FOR seconds without
        their connections counted: until they are, its loss cannot be told, so the watch
        looks more often (a site lost in the second its workers connected would
        otherwise be left to the heartbeat threshold)."""
        return any(now - since < CLOSE_FOR for since in self._unseen.values())

    def check(
        self, label: str, tunnel: Any, links: int | None, active_managers: int, now: float
    ) -> str | None:
        """Why the site is lost now ("" never), or None while it is not (yet).

        tunnel
            The site's SiteTunnel (its repairs and last healthy check).
        links
            Connections established to its worker port here; None: not known.
        active_managers
            Active managers the interchange lists.
        """
        if links:
            self._seen.add(label)
        if active_managers and label not in self._seen and links is not None:
            self._unseen.setdefault(label, now)
        else:
            self._unseen.pop(label, None)
        if links is None or links > 0 or active_managers == 0 or label not in self._seen:
            self._gone.pop(label, None)
            return None
        repairs = len(tunnel.repairs)
        gone = self._gone.setdefault(label, _Gone(now, repairs))
        if repairs > gone.repairs_seen:  # the workers reconnect after a repair: wait again
            self._gone[label] = _Gone(now, repairs)
            return None
        healthy_at = getattr(tunnel, "healthy_checked_at", None)
        if now - gone.since < self.confirm or healthy_at is None or healthy_at < gone.since:
            return None
        self._gone.pop(label, None)
        return (
            f"all its workers' connections closed {now - gone.since:.0f} s ago while "
            f"{active_managers} manager(s) were listed and its tunnel was healthy"
        )
