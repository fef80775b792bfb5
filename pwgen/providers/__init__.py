"""SSH-backed Parsl providers: scheduler commands run on a site's login node.

Usable on their own in a hand-written Parsl config (docs/providers.md) and by pwgen's
generated configs.
"""

from pwgen.providers.flux_launcher import FluxInstanceLauncher
from pwgen.providers.pbspro import SSHPBSProProvider
from pwgen.providers.remote import ProviderConnectionError, RemoteClusterProvider
from pwgen.providers.slurm import SSHSlurmProvider

__all__ = [
    "FluxInstanceLauncher",
    "ProviderConnectionError",
    "RemoteClusterProvider",
    "SSHPBSProProvider",
    "SSHSlurmProvider",
]
