"""The TCP connections established to a worker port here: a site's live workers, as its
relay sees them.

Each manager of a site holds one connection to its interchange's worker port P. It
reaches here through pwgen-relay on the login node and the master's `-R` forward: the
relay passes a worker's close on (FIN, or RST from a killed process), sshd ends the
forwarded channel, and the master closes its connection to 127.0.0.1:P here. So the
connections established to 127.0.0.1:P, read from the kernel (no network traffic),
follow the site's workers within a round trip. A broken tunnel closes them too.
"""

from collections import Counter
from collections.abc import Iterable

from pwgen.tunnels.relay import proc_net_tcp

PROC_NET_TCP = "/proc/net/tcp"
_ESTABLISHED = "01"


def established_to_loopback(ports: Iterable[int], table: str = PROC_NET_TCP) -> Counter[int] | None:
    """How many connections are established to 127.0.0.1:P, for each P of `ports`;
    None where the kernel's table cannot be read (not Linux)."""
    wanted = {proc_net_tcp("127.0.0.1", port): port for port in ports}
    counts: Counter[int] = Counter()
    if not wanted:
        return counts
    try:
        with open(table, encoding="ascii") as rows:
            next(rows, None)  # the header
            for row in rows:
                fields = row.split(None, 4)
                if len(fields) > 3 and fields[3] == _ESTABLISHED and fields[1] in wanted:
                    counts[wanted[fields[1]]] += 1
    except OSError:
        return None
    return counts
