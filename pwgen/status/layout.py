"""Where a project's state lives under `.pwgen/`: runs, facts, ssh config."""

from pathlib import Path

RUNS_DIR = "runs"
FACTS_DIR = "facts"
SSH_CONFIG = Path("ssh") / "config"
