"""`ResumeMemoizer`: Parsl's memoizer, plus the run's checkpoint and an earlier run's results.

Parsl's `BasicMemoizer` decides, when a task is about to launch (its arguments
resolved), whether a stored result stands in for running it. pwgen's keeps that and
adds, for every task of the run (not only apps with `cache=True`):

- its key: Parsl's own hash of the task (`make_hash`: the function's name and module,
  the arguments, keyword arguments and output Files; pwgen.staging.memo keys Files),
  followed by `#n` for the n-th task of the run with that hash, so that calling the
  same app with the same arguments twice runs it twice, as without pwgen (apps with
  `cache=True` keep Parsl's meaning: one result per hash, `#` not added);
- a result found under that key in the earlier run's checkpoint (`pwgen run --resume`)
  is used instead of running the task (`task_record["from_memo"]`, as for Parsl's);
- the result of every task that succeeds is appended to this run's checkpoint, once
  its output Files have come back (their DataFutures done), so that a reused task's
  outputs are where the workflow expects them.

Not recorded: failed tasks, the DFK's internal tasks (staging), apps named by
`--rerun-app`, tasks whose arguments Parsl cannot hash or whose result cannot be pickled.
"""

import logging
import pickle
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from parsl.dataflow.memoization import BasicMemoizer, make_hash

from pwgen.parsl_internals import INTERNAL_EXECUTOR
from pwgen.resume.checkpoint import CheckpointWriter

logger = logging.getLogger(__name__)


class ResumeMemoizer(BasicMemoizer):
    """Parsl's memoizer with pwgen's checkpoint (see the module's docstring)."""

    def __init__(
        self,
        writer: CheckpointWriter,
        earlier: dict[str, bytes],
        rerun_apps: Sequence[str] = (),
    ) -> None:
        super().__init__()  # no checkpoint mode: Parsl writes none, the writer does
        self.writer = writer
        self.earlier = earlier
        self.rerun_apps = frozenset(rerun_apps)
        self._reused: set[int] = set()  # task ids (a task may be checked more than once)
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}  # hash -> tasks with it so far
        self._occurrence: dict[int, int] = {}  # task id -> its n (kept over retries)

    @property
    def reused(self) -> int:
        """Tasks whose earlier result stood in for running them."""
        with self._lock:
            return len(self._reused)

    def start(self, *, run_dir: str, config_run_dir: str) -> None:
        super().start(run_dir=run_dir, config_run_dir=config_run_dir)
        self.writer.open(self.earlier)

    def close(self) -> None:
        super().close()
        self.writer.close()

    def check_memo(self, task: Any) -> Future[Any] | None:
        key = self._key(task)
        if key is None:
            task["hashsum"] = None
            return None
        if task["memoize"]:  # the app's own cache=True: Parsl's in-run cache first
            found = super().check_memo(task)
            if found is not None:
                return found
        task["hashsum"] = key
        return self._earlier_result(task, key)

    def update_memo_result(self, task: Any, r: Any) -> None:
        super().update_memo_result(task, r)
        key = task.get("hashsum")
        if not key or task.get("from_memo"):
            return
        outputs = list(getattr(task["app_fu"], "outputs", ()))
        if not outputs:
            self.writer.append(key, r)
            return
        pending = [len(outputs)]

        def output_done(future: Future[Any]) -> None:
            with self._lock:
                pending[0] -= 1
                last = pending[0] == 0
            if last and all(out.done() and out.exception() is None for out in outputs):
                self.writer.append(key, r)

        for output in outputs:
            output.add_done_callback(output_done)

    def _key(self, task: Any) -> str | None:
        """The task's checkpoint key; None when it is not checkpointed."""
        if task["executor"] == INTERNAL_EXECUTOR or task["func_name"] in self.rerun_apps:
            return None
        try:
            base = make_hash(task)
        except Exception as err:  # an argument Parsl has no memo key for
            logger.info("task %s not checkpointed: %s", task["id"], err)
            return None
        if task["memoize"]:
            return base
        with self._lock:
            occurrence = self._occurrence.get(task["id"])
            if occurrence is None:
                occurrence = self._seen.get(base, 0)
                self._seen[base] = occurrence + 1
                self._occurrence[task["id"]] = occurrence
        return f"{base}#{occurrence}"

    def _earlier_result(self, task: Any, key: str) -> Future[Any] | None:
        pickled = self.earlier.get(key)
        if pickled is None:
            return None
        try:
            result = pickle.loads(pickled)
        except Exception as err:  # e.g. a class the workflow no longer has
            logger.info("task %s: its checkpointed result is not used: %s", task["id"], err)
            return None
        future: Future[Any] = Future()
        future.set_result(result)
        with self._lock:
            self._reused.add(task["id"])
        return future
