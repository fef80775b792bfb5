"""`pwgen status`: the project's sites, tunnels, blocks and last runs. Read-only.

What it looks at:

    .pwgen/runs/<id>/manifest.json      what `pwgen run` recorded (written at the end of a
                                        run; a run killed with -9 has none, or one without
                                        `finished`)
    .pwgen/runs/<id>/runinfo/NNN/       Parsl's run dir: `parsl.log` ("Run id is: <uuid>",
                                        the name of the run's dir on the sites),
                                        `<label>/interchange.log` ("Bound to port P": the
                                        worker port), `submit_scripts/<job name>` (one per
                                        block: the exact Slurm/PBS job names of the run)
    .pwgen/facts/<label>.json           env hash, Parsl, Python, the site's workdir
    /proc                               this user's processes holding files of a run
    each site, over ssh (one call)      the user's jobs, pwgen-relay and worker-pool
                                        processes, loopback listeners, cert copies

A run is *running* while its controller lives: the `pid` of its manifest (if the
manifest has one) is alive and started no later than the run, or else a process of
this user other than Parsl's helpers and ssh writes to a file of the run (the
DataFlowKernel keeps `parsl.log` open for writing). A run without `finished` whose controller is
gone is *crashed*: `pwgen teardown` cleans up after it.

Attribution (what belongs to this project), used by `pwgen teardown` too:

* controller processes: this user's processes writing to a file under this
  project's `.pwgen/runs/<id>/` (interchange, Parsl and ssh processes: also naming
  or reading one), and the descendants of interchange and Parsl helpers. The
  interchange keeps `<run>/runinfo/NNN/<label>/interchange.log` open for writing;
  a local worker pool names its `--logdir` under the run.
* blocks: a job is a run's when its name is the name of one of the run's local
  submit scripts (`parsl.<label>.block-<n>.<submit time>`, unique per submission).
  Other `parsl.*` jobs of the site user are shown without a run (another project,
  or a run dir that was deleted) and never cancelled.
* relays and cert copies: under `<workdir>/<parsl run uuid>/<label>/` on the site;
  the uuid comes from the run's `parsl.log` (and the dir from its submit scripts).

Status never starts an ssh master: remote calls use `ControlMaster=no` (the site's
master when one runs, else a direct connection), with short timeouts, all sites in
parallel. An unreachable site is reported as such.
"""

from pwgen.status.probe import (
    Job,
    RemoteProcess,
    SiteProbe,
    jobs_command,
    parse_probe,
    probe_script,
    relay_pidfile_of,
)
from pwgen.status.processes import LocalProcess, pid_alive, process_kind, scan_processes
from pwgen.status.remote import (
    CONNECT_TIMEOUT,
    PROBE_TIMEOUT,
    master_pid,
    probe_site,
    run_on_site,
    site_master,
)
from pwgen.status.render import (
    blocks_table,
    controller_table,
    print_status,
    runs_table,
    sites_table,
    tunnels_table,
)
from pwgen.status.report import (
    SiteStatus,
    StatusReport,
    TunnelHealth,
    gather_status,
    status_json,
)
from pwgen.status.runs import (
    STARTING_GRACE,
    RunInfo,
    RunSite,
    describe_run,
    list_runs,
    parsl_run_ids,
    submit_scripts,
)

__all__ = [
    "CONNECT_TIMEOUT",
    "PROBE_TIMEOUT",
    "STARTING_GRACE",
    "Job",
    "LocalProcess",
    "RemoteProcess",
    "RunInfo",
    "RunSite",
    "SiteProbe",
    "SiteStatus",
    "StatusReport",
    "TunnelHealth",
    "blocks_table",
    "controller_table",
    "describe_run",
    "gather_status",
    "jobs_command",
    "list_runs",
    "master_pid",
    "parse_probe",
    "parsl_run_ids",
    "pid_alive",
    "print_status",
    "probe_script",
    "probe_site",
    "process_kind",
    "relay_pidfile_of",
    "run_on_site",
    "runs_table",
    "scan_processes",
    "site_master",
    "sites_table",
    "status_json",
    "submit_scripts",
    "tunnels_table",
]
