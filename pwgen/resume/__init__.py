"""Resuming a crashed run: every run checkpoints the results of its tasks as they end;
`pwgen run --resume RUN_ID` reuses those of a dead run and runs the rest
(docs/failover.md, "Resuming a crashed run").

    checkpoint.py  the checkpoint file: framed records, fsync'd as tasks end, torn tail
                   detected (`CheckpointWriter`, `read_checkpoint`)
    memoizer.py    `ResumeMemoizer`: Parsl's `BasicMemoizer`, keyed per task occurrence,
                   recording every successful task and reusing an earlier run's results
    plan.py        `plan_resume` (the dead run checked, torn down, read; or the hint that
                   it can be resumed), `install_memoizer` (into the run's Parsl config)
    monitoring.py  the monitoring database in SQLite's WAL mode
"""

from pwgen.resume.checkpoint import CheckpointRead, CheckpointWriter, read_checkpoint
from pwgen.resume.monitoring import prepare_monitoring_db
from pwgen.resume.plan import (
    ResumeError,
    ResumePlan,
    install_memoizer,
    offer_resume,
    plan_resume,
)

__all__ = [
    "CheckpointRead",
    "CheckpointWriter",
    "ResumeError",
    "ResumePlan",
    "install_memoizer",
    "offer_resume",
    "plan_resume",
    "prepare_monitoring_db",
    "read_checkpoint",
]
