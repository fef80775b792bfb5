#!/bin/bash
# pwgen teardown's action on a site's login node, for runs whose controller died
# (pwgen/teardown/script.py runs it with bash -c, its values as arguments): cancel the
# runs' blocks and wait until they leave the queue, stop their relays and worker
# pools, remove their certificate and staging copies. Prints `cancel_msg|...`,
# `left|IDS`, `stopped|PID`, `removed|PATH` lines, and `end|` when it ran through.
#
# Arguments: SCHEDULER (slurm | pbspro) KILL_TICKS QUEUE_TICKS, then any of
#   --job ID              a block to cancel (scancel / qdel)
#   --relay PID PIDFILE   a relay: stopped while its command line holds --pidfile PIDFILE
#   --pool PID WORD       a worker pool: stopped while its command line holds WORD
#   --cert DIR            a copy to remove
# A stopped process gets TERM, then KILL after KILL_TICKS ticks of 0.05 s; blocks get
# QUEUE_TICKS ticks of 0.2 s to leave the queue. The command-line check means that a
# pid reused by another process is never signalled.

scheduler=$1 kill_ticks=$2 queue_ticks=$3
shift 3
jobs=() relays=() pools=() certs=()
while [ $# -gt 0 ]; do
  case $1 in
    --job) jobs+=("$2"); shift 2 ;;
    --relay) relays+=("$2" "$3"); shift 3 ;;
    --pool) pools+=("$2" "$3"); shift 3 ;;
    --cert) certs+=("$2"); shift 2 ;;
    *) echo "site_cleanup.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
u=$(id -un)

# Process $1 runs and its command line holds $2 (its NUL-separated words each end in a
# space here, so a word given with a trailing space matches whole).
ours() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null \
    && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}

stop() {
  if ours "$1" "$2"; then
    kill "$1" 2>/dev/null
    i=0
    while ours "$1" "$2" && [ "$i" -lt "$kill_ticks" ]; do
      i=$((i + 1))
      sleep 0.05
    done
    if ours "$1" "$2"; then kill -9 "$1" 2>/dev/null; fi
    echo "stopped|$1"
  fi
}

# This user's jobs that are still queued or running.
queued() {
  if [ "$scheduler" = pbspro ]; then
    qselect -u "$u" 2>/dev/null
  else
    squeue -h -u "$u" -o '%i %T' 2>/dev/null \
      | grep -vE ' (COMPLETING|COMPLETED|CANCELLED|FAILED|TIMEOUT)$' | cut -d' ' -f1
  fi
}

if [ ${#jobs[@]} -gt 0 ]; then
  if [ "$scheduler" = pbspro ]; then cancel=qdel; else cancel=scancel; fi
  "$cancel" "${jobs[@]}" 2>&1 | sed 's/^/cancel_msg|/'
  ids=()
  for job in "${jobs[@]}"; do ids+=(-e "$job"); done
  i=0
  while [ "$i" -lt "$queue_ticks" ]; do
    left=$(queued | grep -xF "${ids[@]}")
    [ -z "$left" ] && break
    i=$((i + 1))
    sleep 0.2
  done
  # Unquoted: one line, the ids separated by spaces.
  # shellcheck disable=SC2086
  echo "left|$(echo $left)"
fi
for ((n = 0; n < ${#relays[@]}; n += 2)); do
  stop "${relays[n]}" "--pidfile ${relays[n + 1]} "
  rm -f -- "${relays[n + 1]}"
done
for ((n = 0; n < ${#pools[@]}; n += 2)); do
  stop "${pools[n]}" "${pools[n + 1]} "
done
for path in "${certs[@]}"; do
  rm -rf -- "$path" && echo "removed|$path"
done
echo "end|"
