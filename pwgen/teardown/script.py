"""The remote action script: bash that cancels blocks and stops relays and pools on a site."""

import shlex
from collections.abc import Sequence

from pwgen.teardown.local import KILL_AFTER

#: Seconds to wait for cancelled blocks to leave the queue.
QUEUE_WAIT = 20


def action_script(
    scheduler: str,
    job_ids: Sequence[str],
    relays: Sequence[tuple[int, str]],
    cert_dirs: Sequence[str],
    pools: Sequence[tuple[int, str]],
) -> str:
    """Bash for the login node: cancel, wait for the queue, stop relays and pools, rm certs.

    relays: (pid, pid file); pools: (pid, `--logdir=...` word). A pid is only signalled
    while its command line still holds that word (no reused pid is killed).
    """
    q = shlex.quote
    lines = [
        "u=$(id -un)",
        'ours() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && '
        "tr '\\0' ' ' </proc/\"$1\"/cmdline 2>/dev/null | grep -qF -- \"$2\"; }",
        'stop() { if ours "$1" "$2"; then kill "$1" 2>/dev/null; i=0; '
        'while ours "$1" "$2" && [ "$i" -lt ' + str(int(KILL_AFTER * 20)) + " ]; do "
        'i=$((i + 1)); sleep 0.05; done; if ours "$1" "$2"; then kill -9 "$1" 2>/dev/null; fi; '
        'echo "stopped|$1"; fi; }',
    ]
    if job_ids:
        ids = " ".join(q(job) for job in job_ids)
        if scheduler == "pbspro":
            lines.append(f"qdel {ids} 2>&1 | sed 's/^/cancel_msg|/'")
            listing = 'qselect -u "$u" 2>/dev/null'
        else:
            lines.append(f"scancel {ids} 2>&1 | sed 's/^/cancel_msg|/'")
            listing = (
                "squeue -h -u \"$u\" -o '%i %T' 2>/dev/null "
                "| grep -vE ' (COMPLETING|COMPLETED|CANCELLED|FAILED|TIMEOUT)$' | cut -d' ' -f1"
            )
        pattern = "|".join(job.replace(".", "\\.") for job in job_ids)
        lines.append(
            f"i=0; while [ $i -lt {QUEUE_WAIT * 5} ]; do "
            f"left=$({listing} | grep -xE {q(pattern)}); "
            '[ -z "$left" ] && break; i=$((i + 1)); sleep 0.2; done; '
            'echo "left|$(echo $left)"'
        )
    for pid, pidfile in relays:
        # cmdline words are NUL-separated: `tr` makes each end with a space.
        lines.append(f"stop {pid} {q(f'--pidfile {pidfile} ')}; rm -f -- {q(pidfile)}")
    for pid, marker in pools:
        lines.append(f"stop {pid} {q(marker + ' ')}")
    for path in cert_dirs:
        lines.append(f"rm -rf -- {q(path)} && echo {q('removed|' + path)}")
    lines.append('echo "end|"')
    return "\n".join(lines)
