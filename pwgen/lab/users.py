"""Site users: one non-root account per site, known to every node of the machine.

Its home directory exists only inside the site's nodes (/home is the site's own
home dir there), so /etc/passwd names /home/<user> but the root namespace has none.
"""

import pwd

from pwgen.lab.system import run


def exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def ensure_user(name: str, label: str) -> pwd.struct_passwd:
    """Create the site user unless it exists (`up` checked before that it is this lab's)."""
    if exists(name):
        return pwd.getpwnam(name)
    run(
        [
            "useradd",
            "--no-create-home",
            "--home-dir",
            f"/home/{name}",
            "--shell",
            "/bin/bash",
            "--user-group",
            "--comment",
            f"pwgen lab site {label}",
            # "*": no password, yet not locked ("!"), which sshd without PAM refuses.
            "--password",
            "*",
            name,
        ]
    )
    return pwd.getpwnam(name)


def remove_user(name: str) -> None:
    if exists(name):
        # -f: zombies of the user's processes may linger a while on these machines.
        run(["userdel", "--force", name])
