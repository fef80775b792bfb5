"""`SSHSlurmProvider`: Parsl's SlurmProvider, with Slurm commands run on the login node."""

from parsl.launchers import SingleNodeLauncher
from parsl.launchers.base import Launcher
from parsl.providers import SlurmProvider

from pwgen.providers.remote import RemoteClusterProvider


class SSHSlurmProvider(RemoteClusterProvider, SlurmProvider):
    """Parsl's `SlurmProvider`, submitting over SSH to a Slurm login node.

    Takes every `SlurmProvider` argument (same names, positions and defaults, except
    `cmd_timeout`, 30 s instead of 10, and `launcher`, None meaning a fresh
    `SingleNodeLauncher()`), plus the keyword-only
    `ssh_config`, `host`, `remote_script_dir` and `connect_timeout` of
    `RemoteClusterProvider` (see there).

    Local vs remote: `sbatch`, `squeue`, `sacct`, `scancel` run on the login node
    through `ssh -F ssh_config -o BatchMode=yes host -- ... bash -lc CMD`. The DFK's
    `script_dir` stays local and keeps a copy of every submit script; the copy the site
    runs is in `remote_script_dir`, and all paths inside it (`--output`, `--error`,
    the launcher's `SCRIPT_DIR`) and the `job_stdout_path`/`job_stderr_path` recorded
    in `resources` are remote. `fetch_job_output(job_id)` reads those over ssh.

    At construction (network!): `mkdir -p remote_script_dir` on the site, then the
    parent's `sacct -X` probe (it falls back to `squeue` when Slurm accounting is
    off). If ssh itself fails, `ProviderConnectionError` is raised rather than the
    probe silently selecting `squeue`. Build the provider once the site is reachable.
    """

    def __init__(
        self,
        partition: str | None = None,
        account: str | None = None,
        qos: str | None = None,
        constraint: str | None = None,
        clusters: str | None = None,
        nodes_per_block: int = 1,
        cores_per_node: int | None = None,
        mem_per_node: int | None = None,
        gpus_per_node: int | None = None,
        gres: str | None = None,
        init_blocks: int = 1,
        min_blocks: int = 0,
        max_blocks: int = 1,
        parallelism: float = 1,
        walltime: str = "00:10:00",
        scheduler_options: str = "",
        regex_job_id: str = r"Submitted batch job (?P<id>\S*)",
        worker_init: str = "",
        cmd_timeout: int = 30,
        status_batch_size: int = 50,
        exclusive: bool = True,
        launcher: Launcher | None = None,
        *,
        ssh_config: str,
        host: str,
        remote_script_dir: str,
        connect_timeout: int = 10,
    ) -> None:
        self._setup_remote(ssh_config, host, remote_script_dir, connect_timeout, cmd_timeout)
        self._connect()
        self._strict_connection = True  # the parent's `sacct -X` must not mask an ssh failure
        try:
            super().__init__(
                partition=partition,
                account=account,
                qos=qos,
                constraint=constraint,
                clusters=clusters,
                nodes_per_block=nodes_per_block,
                cores_per_node=cores_per_node,
                mem_per_node=mem_per_node,
                gpus_per_node=gpus_per_node,
                gres=gres,
                init_blocks=init_blocks,
                min_blocks=min_blocks,
                max_blocks=max_blocks,
                parallelism=parallelism,
                walltime=walltime,
                scheduler_options=scheduler_options,
                regex_job_id=regex_job_id,
                worker_init=worker_init,
                cmd_timeout=cmd_timeout,
                status_batch_size=status_batch_size,
                exclusive=exclusive,
                launcher=SingleNodeLauncher() if launcher is None else launcher,
            )
        finally:
            self._strict_connection = False
