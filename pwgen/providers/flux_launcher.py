"""`FluxInstanceLauncher`: a block that is one Flux instance, with the worker pool in it."""

import shlex
from collections.abc import Sequence

from parsl.launchers.base import Launcher

from pwgen.siteflux import DEFAULT_SRUN_ARGS


class FluxInstanceLauncher(Launcher):
    """Starts one Flux broker per node of the block (`srun`, bootstrapped over Slurm's
    PMI) and runs the command (the HTEX worker pool) as the instance's initial program,
    on the block's first node. Apps that ask for ranks run as jobs of that instance
    (pwgen.executors.flux); the block ends when the pool does.

    flux : str
        Absolute path of the `flux` command on the compute nodes.
    srun_args : sequence of str
        srun's options that bootstrap the brokers into one instance (facts: `--mpi=pmi2`
        unless Slurm's MpiDefault already is pmi2).
    """

    def __init__(
        self, flux: str, srun_args: Sequence[str] = DEFAULT_SRUN_ARGS, debug: bool = True
    ) -> None:
        super().__init__(debug=debug)
        if not flux.startswith("/"):
            raise ValueError(f"flux {flux!r}: expected an absolute path on the site")
        self.flux = flux
        self.srun_args = list(srun_args)

    def __call__(
        self, command: str, tasks_per_node: int, nodes_per_block: int, script_dir: str = ""
    ) -> str:
        script = "${SCRIPT_DIR:+$SCRIPT_DIR/}cmd_$SLURM_JOB_NAME.sh"
        brokers = ["srun", f"--nodes={nodes_per_block}", "--ntasks-per-node=1", *self.srun_args]
        # Each broker gets every CPU of its node (srun of Slurm 22.05 to 23.02 does not
        # inherit the job's --cpus-per-task), so Flux sees the whole block.
        cpus = "--cpus-per-task=$SLURM_CPUS_ON_NODE"
        start = [self.flux, "start", "/bin/bash"]
        return (
            "set -e\n"
            f"SCRIPT_DIR={shlex.quote(script_dir)}\n"
            '[[ -d "$SCRIPT_DIR" ]] || SCRIPT_DIR=""\n'
            f"cat << 'PWGEN_FLUX_EOF' > {script}\n"
            f"{command}\n"
            "PWGEN_FLUX_EOF\n"
            f"chmod u+x {script}\n"
            f"{shlex.join(brokers)} {cpus} {shlex.join(start)} {script}\n"
        )
