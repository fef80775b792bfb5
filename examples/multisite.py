"""Tasks on every site at once: `pwgen run examples/multisite.py --sites SITES -- [N]`.

Each site is one Parsl executor named by its label; an app runs where its
`executors=[...]` says. This script sends N tasks to every site the config
defines and prints which compute node ran each one.
"""

import sys
from collections import Counter

import parsl
from parsl import python_app


def where(x: int) -> tuple[int, int, str]:
    import socket

    return x, x * x, socket.gethostname()


def main(tasks_per_site: int) -> None:
    labels = sorted(label for label in parsl.dfk().executors if not label.startswith("_"))
    apps = {label: python_app(where, executors=[label]) for label in labels}
    futures = [(label, apps[label](i)) for label in labels for i in range(tasks_per_site)]
    nodes: Counter[tuple[str, str]] = Counter()
    for label, future in futures:
        x, squared, host = future.result()
        assert squared == x * x
        print(f"{label}: square({x}) = {squared} on {host}")
        nodes[label, host] += 1
    for (label, host), count in sorted(nodes.items()):
        print(f"site {label} node {host}: {count} tasks")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
