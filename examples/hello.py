"""Hello from a site: `pwgen run examples/hello.py --sites examples/sites.local.yaml -- 10`.

pwgen loads the Parsl config before this script starts; the apps only name the
site (executor label) they run on. The optional argument is the number of tasks.
"""

import sys
import tempfile
from pathlib import Path

from parsl import bash_app, python_app


@python_app(executors=["local"])
def square(x: int) -> tuple[int, int, str]:
    import os
    import socket

    return x, x * x, f"{socket.gethostname()}:{os.getpid()}"


@bash_app(executors=["local"])
def greet(name: str, stdout: str) -> str:
    return f"echo hello from $(hostname), {name}"


def main(count: int) -> None:
    futures = [square(i) for i in range(count)]
    for x, squared, worker in (future.result() for future in futures):
        print(f"square({x}) = {squared}  [worker {worker}]")
    print(f"sum of squares 0..{count - 1} = {sum(f.result()[1] for f in futures)}")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "greet.out"
        greet("pwgen", stdout=str(out)).result()
        print(out.read_text().strip())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
