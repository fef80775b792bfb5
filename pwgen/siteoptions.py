"""Batch and ssh options a site may add, checked before they reach a submit script or an
ssh config (docs/sites-reference.md lists them).

Each value is data: it reaches a scheduler directive, a Parsl provider argument (the
generated config quotes it) or a line of pwgen's ssh config, never a shell. So each is
held to what its consumer can take without a second meaning: a directive is one line
that starts with the scheduler's own prefix (never a shell command in the script), a
constraint or gres is a word of the scheduler's syntax, and an ssh option is one of a
list of harmless OpenSSH options with a value of one word (no `ProxyCommand`,
`LocalCommand` or `Include`: those run commands or read files).
"""

import re
from typing import Annotated

from pydantic import AfterValidator

from pwgen.sitevalues import control_character
from pwgen.validation import shown

#: The directive prefix of each scheduler's batch script.
DIRECTIVE_PREFIX = {"slurm": "#SBATCH ", "pbspro": "#PBS "}
#: Options a site's `ssh_options` may set, each in pwgen's ssh config for that host.
SSH_OPTIONS = frozenset(
    {
        "AddressFamily",
        "Ciphers",
        "Compression",
        "ConnectTimeout",
        "ConnectionAttempts",
        "GSSAPIAuthentication",
        "GSSAPIDelegateCredentials",
        "HostKeyAlgorithms",
        "IPQoS",
        "KexAlgorithms",
        "MACs",
        "PreferredAuthentications",
        "PubkeyAcceptedAlgorithms",
        "ServerAliveCountMax",
        "ServerAliveInterval",
        "TCPKeepAlive",
    }
)
_SSH_VALUE = re.compile(r"^[A-Za-z0-9@._,:+=-]{1,200}$")
# Slurm's --constraint: features joined by & | , with brackets, counts and negation.
_CONSTRAINT = re.compile(r"^[A-Za-z0-9_.&|,:*()\[\]!-]{1,200}$")
# Slurm's --gres: name[:type]:count[,...]
_GRES = re.compile(r"^[A-Za-z0-9_.:,/-]{1,200}$")


def _check_directive(line: str) -> str:
    if control_character(line) is not None:
        raise ValueError(f"{shown(line)}: a scheduler option is one line, without controls")
    if not line.startswith("#") or len(line) > 500:
        raise ValueError(
            f"{shown(line)}: expected a directive line such as '#SBATCH --mail-type=END'"
        )
    return line


def _check_word(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{shown(value)} is not a {what}")
        return value

    return AfterValidator(check)


SchedulerDirective = Annotated[str, AfterValidator(_check_directive)]
Constraint = Annotated[str, _check_word(_CONSTRAINT, "Slurm constraint (e.g. 'skylake&ib')")]
Gres = Annotated[str, _check_word(_GRES, "Slurm gres (e.g. 'gpu:a100:2')")]


def check_ssh_options(options: dict[str, str]) -> dict[str, str]:
    """Only listed OpenSSH options, each with a one-word value."""
    for name, value in options.items():
        if name not in SSH_OPTIONS:
            allowed = ", ".join(sorted(SSH_OPTIONS))
            raise ValueError(f"ssh option {shown(name)} is not allowed here (allowed: {allowed})")
        if not _SSH_VALUE.match(str(value)):
            raise ValueError(f"ssh option {name}: {shown(value)} is not a single-word value")
    return options


def check_directives(scheduler: str, lines: tuple[str, ...]) -> None:
    """Each directive of a site is its own scheduler's (`#SBATCH` on Slurm, `#PBS` on PBS)."""
    prefix = DIRECTIVE_PREFIX.get(scheduler)
    for line in lines:
        if prefix is None or not line.startswith(prefix):
            wanted = f"lines starting with {prefix.strip()!r}" if prefix else "none"
            raise ValueError(
                f"scheduler_options: {shown(line)} does not fit a {scheduler} site ({wanted})"
            )
