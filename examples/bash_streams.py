"""Bash apps' stdout/stderr and a file chain across sites:
`pwgen run examples/bash_streams.py --sites SITES -- OUT`.

Needs two sites (the first two labels of the config, A and B). Every stream is named
with a path on this machine, the way a workflow does locally, and every one of them is
here when the app's future completes, although the sites share no filesystem with it:

- relative and absolute paths, `(path, "w")`, `(path, "a")` (two apps on two sites
  append to one log), a `File`, `parsl.AUTO_LOGNAME`;
- a memoized app (`cache=True`) called twice: its stdout (appended to) once;
- a failing app: its stderr still comes back, and the exception says where it is;
- a chain A -> B -> here: a 50 MB file made on A is read on B (pwgen moves it
  through this machine) and both sites' sha256 are printed.

Everything lands under OUT (relative paths: the working directory is changed to OUT).
"""

import os
import sys
from pathlib import Path

import parsl
from parsl import File, bash_app, python_app
from parsl.app.errors import BashExitFailure


def greet(name: str, stdout: object = None, stderr: object = None) -> str:
    return f"echo hello {name} from $(hostname); echo note {name} >&2"


def fail(stdout: object = None, stderr: object = None) -> str:
    return "echo started; echo 'something went wrong' >&2; exit 3"


def make_data(megabytes: int, stdout: object = None, outputs: list[File] = ()) -> str:  # type: ignore[assignment]
    return f"head -c {megabytes}M /dev/urandom > {outputs[0]} && sha256sum < {outputs[0]}"


def digest(inputs: list[File] = ()) -> str:  # type: ignore[assignment]
    import hashlib

    with open(inputs[0], "rb") as data:
        return hashlib.sha256(data.read()).hexdigest()


def main(out: str) -> None:
    first, second = sorted(label for label in parsl.dfk().executors if label[0] != "_")[:2]
    os.makedirs(out, exist_ok=True)
    os.chdir(out)  # relative stream paths are this working directory's
    on_a = bash_app(greet, executors=[first])
    on_b = bash_app(greet, executors=[second])
    on_a("relative", stdout="relative.out", stderr="relative.err").result()
    on_b("absolute", stdout=(os.path.join(out, "absolute.out"), "w")).result()
    on_a("append-1", stdout=("shared.log", "a")).result()
    on_b("append-2", stdout=("shared.log", "a")).result()
    on_b("file", stdout=File("file.out")).result()
    logged = on_a("auto", stdout=parsl.AUTO_LOGNAME)
    logged.result()
    print(f"auto log: {logged.stdout}", flush=True)
    cached = bash_app(greet, executors=[first], cache=True)
    for _ in range(2):  # the second call is memoized: it neither runs nor appends again
        cached("memo", stdout="memo.out").result()
    try:
        bash_app(fail, executors=[second])(stderr="failed.err").result()
    except BashExitFailure as err:
        print(f"failed as expected: {err} | {' | '.join(getattr(err, '__notes__', []))}")
    made = bash_app(make_data, executors=[first])(50, stdout="chain.sha", outputs=[File("a.bin")])
    read = python_app(digest, executors=[second])(inputs=[made.outputs[0]])
    made.result()
    written = Path("chain.sha").read_text().split()[0]
    print(f"chain: {first} wrote {written}", flush=True)
    print(f"chain: {second} read {read.result()}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT")
    main(os.path.abspath(sys.argv[1]))
