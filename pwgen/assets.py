"""Where pwgen's Ansible assets are: package data, wherever pwgen is installed.

pwgen/ansible/ansible.cfg                          the settings `pwgen provision` uses
pwgen/ansible/ansible_collections/pwgen/hpc/       the pwgen.hpc collection (roles,
                                                   modules, inventory plugin, playbooks)
"""

from importlib.resources import files
from pathlib import Path

from pwgen.errors import PwgenError


class AssetsError(PwgenError):
    """pwgen's Ansible files are not where the package should have them."""


def ansible_dir() -> Path:
    """The directory of ansible.cfg and the collections (a real directory: Ansible reads it)."""
    directory = files("pwgen") / "ansible"
    if not isinstance(directory, Path) or not (directory / "ansible.cfg").is_file():
        raise AssetsError(f"{directory}: pwgen's Ansible files are missing (reinstall pwgen)")
    return directory


def collection_dir() -> Path:
    """The pwgen.hpc collection (what `ansible-galaxy collection build` takes)."""
    return ansible_dir() / "ansible_collections" / "pwgen" / "hpc"


def playbook(name: str) -> Path:
    """One of the collection's playbooks (`provision.yml`, `facts.yml`, `purge.yml`)."""
    return collection_dir() / "playbooks" / name
