"""The Parsl config a `pwgen run` loads: generated from the sites, or the user's own.

By default the run generates its config from the sites and their facts, as
`pwgen config` would, into the run's directory. With `pwgen run --config FILE` it
loads the user's edited config instead; the run's directory keeps a copy of the file
that ran either way (`parsl_config.py`). What a run adds stays the same for both:
Parsl's run dir in the run's directory, failover's retry handler, stand-ins for sites
found unreachable (their executors are taken out of the user's config), and teardown.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pwgen.configgen import load_config_module, render_config
from pwgen.errors import ConfigError
from pwgen.failover.unavailable import UnavailableExecutor
from pwgen.fileio import atomic_write
from pwgen.layout import RunLayout
from pwgen.parsl_checks import check_parsl_internals
from pwgen.parsl_internals import add_executors
from pwgen.sites import Site
from pwgen.userfiles import read_user_text


def load_run_config(
    live: Sequence[Site],
    sites_file: Path,
    state_dir: Path,
    run: RunLayout,
    unavailable: Mapping[str, str],
    users_config: Path | None = None,
) -> Any:
    """The run's Parsl `Config`, its source kept in the run's directory.

    `live`: the sites preflight reached; `unavailable`: label -> why, for the others.
    Importing the config constructs its providers: they reach their sites now.
    """
    if users_config is None:
        source = render_config(
            live, source=str(sites_file), run_dir=str(run.runinfo), state_dir=state_dir
        )
    else:
        source = read_user_text(users_config, "config file", ConfigError)
    atomic_write(run.config, source)  # the config that runs, kept with the run
    check_parsl_internals()  # a Parsl upgrade that broke pwgen fails here, not mid-run
    config = load_config_module(users_config or run.config).config
    config.run_dir = str(run.runinfo)  # a user's config too: the run's logs stay with the run
    # A user's config may still name a site preflight found unreachable: replaced.
    stand_ins = [UnavailableExecutor(label, why) for label, why in unavailable.items()]
    add_executors(config, stand_ins, replacing=list(unavailable))
    return config
