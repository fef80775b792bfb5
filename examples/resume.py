"""A workflow to crash and resume: `pwgen run examples/resume.py -- N PAUSE OUT [MARKS]`.

N tasks that may run on any site each sleep PAUSE seconds, append a line ("i host")
to MARKS (a file under the site user's home; default `resume-marks.txt`) and return
(i, i*i); the results go to OUT as JSON. Kill `pwgen run` with -9 half way, then
`pwgen run examples/resume.py --resume RUN_ID -- N PAUSE OUT`: the tasks that had
finished are not run again (count the lines of MARKS), and OUT is the same as an
uninterrupted run's (docs/failover.md, "Resuming a crashed run").
"""

import json
import sys

from parsl import python_app


@python_app(executors="all")
def square(i: int, pause: float, marks: str) -> tuple[int, int]:
    import os
    import socket
    import time

    time.sleep(pause)
    with open(os.path.expanduser(os.path.join("~", marks)), "a") as out:
        out.write(f"{i} {socket.gethostname()}\n")
    return i, i * i


def main(count: int, pause: float, out: str, marks: str) -> None:
    futures = [square(i, pause, marks) for i in range(count)]
    with open(out, "w") as results:
        json.dump([future.result() for future in futures], results)


if __name__ == "__main__":
    main(
        int(sys.argv[1]),
        float(sys.argv[2]),
        sys.argv[3],
        sys.argv[4] if len(sys.argv) > 4 else "resume-marks.txt",
    )
