"""The TCP connections established to a worker port here: a site's live workers, as its
relay sees them.

Each manager of a site holds one connection to its interchange's worker port P. It
reaches here through pwgen-relay on the login node and the master's `-R` forward: the
relay passes a worker's close on (FIN, or RST from a killed process), sshd ends the
forwarded channel, and the master closes its connection to 127.0.0.1:P here. So the
connections established to 127.0.0.1:P, read from the kernel (no network traffic),
follow the site's workers within a round trip. A broken tunnel closes them too.

The interchange's ZMQ socket is dual-stack (Parsl enables IPv6), so the connections
it accepts are listed in /proc/net/tcp6, their local address ::ffff:127.0.0.1; both
tables are read.
"""

from collections import Counter
from collections.abc import Iterable

from pwgen.tunnels.relay import proc_net_tcp

TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_ESTABLISHED = "01"
#: ::ffff:127.0.0.1 as /proc/net/tcp6 prints it (four 32-bit words, host byte order).
_MAPPED_LOOPBACK = "0000000000000000FFFF0000" + proc_net_tcp("127.0.0.1", 0).split(":")[0]


def established_to_loopback(
    ports: Iterable[int], tables: Iterable[str] = TABLES
) -> Counter[int] | None:
    """How many connections are established to 127.0.0.1:P (plain or IPv4-mapped),
    for each P of `ports`; None where the kernel's tables cannot be read (not Linux)."""
    wanted: dict[str, int] = {}
    for port in ports:
        wanted[proc_net_tcp("127.0.0.1", port)] = port
        wanted[f"{_MAPPED_LOOPBACK}:{port:04X}"] = port
    counts: Counter[int] = Counter()
    if not wanted:
        return counts
    try:
        for table in tables:
            with open(table, encoding="ascii") as rows:
                next(rows, None)  # the header
                for row in rows:
                    fields = row.split(None, 4)
                    if len(fields) > 3 and fields[3] == _ESTABLISHED and fields[1] in wanted:
                        counts[wanted[fields[1]]] += 1
    except OSError:
        return None
    return counts
