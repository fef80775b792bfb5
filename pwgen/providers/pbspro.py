"""`SSHPBSProProvider`: Parsl's PBSProProvider, with PBS commands run on the login node."""

from parsl.launchers import SingleNodeLauncher
from parsl.launchers.base import Launcher
from parsl.providers import PBSProProvider

from pwgen.providers.remote import RemoteClusterProvider


class SSHPBSProProvider(RemoteClusterProvider, PBSProProvider):
    """Parsl's `PBSProProvider`, submitting over SSH to a PBS Pro login node.

    Takes every `PBSProProvider` argument (same names, positions and defaults, except
    `launcher`: None means a fresh `SingleNodeLauncher()`), plus the keyword-only
    `ssh_config`, `host`, `remote_script_dir` and `connect_timeout` of
    `RemoteClusterProvider` (see there).

    Local vs remote: `qsub`, `qstat`, `qdel` run on the login node through
    `ssh -F ssh_config -o BatchMode=yes host -- ... bash -lc CMD`. The DFK's
    `script_dir` stays local and keeps a copy of every submit script; the copy the site
    runs is in `remote_script_dir`, and all paths inside it (`#PBS -o`, `#PBS -e`, the
    launcher's `SCRIPT_DIR`) and the `job_stdout_path`/`job_stderr_path` recorded in
    `resources` are remote. `fetch_job_output(job_id)` reads those over ssh.

    At construction (network!): `mkdir -p remote_script_dir` on the site;
    `ProviderConnectionError` if ssh itself fails. (Parsl's `PBSProProvider` runs
    nothing at construction; this one checks the site early, like the Slurm one.)
    """

    def __init__(
        self,
        account: str | None = None,
        queue: str | None = None,
        scheduler_options: str = "",
        select_options: str = "",
        worker_init: str = "",
        nodes_per_block: int = 1,
        cpus_per_node: int = 1,
        init_blocks: int = 1,
        min_blocks: int = 0,
        max_blocks: int = 1,
        parallelism: float = 1,
        launcher: Launcher | None = None,
        walltime: str = "00:20:00",
        cmd_timeout: int = 120,
        *,
        ssh_config: str,
        host: str,
        remote_script_dir: str,
        connect_timeout: int = 10,
    ) -> None:
        self._setup_remote(ssh_config, host, remote_script_dir, connect_timeout, cmd_timeout)
        self._connect()
        super().__init__(  # type: ignore[no-untyped-call]
            account=account,
            queue=queue,
            scheduler_options=scheduler_options,
            select_options=select_options,
            worker_init=worker_init,
            nodes_per_block=nodes_per_block,
            cpus_per_node=cpus_per_node,
            init_blocks=init_blocks,
            min_blocks=min_blocks,
            max_blocks=max_blocks,
            parallelism=parallelism,
            launcher=SingleNodeLauncher() if launcher is None else launcher,
            walltime=walltime,
            cmd_timeout=cmd_timeout,
        )
