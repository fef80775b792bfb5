"""The lab: real multi-site HPC (sshd + Slurm + munge) simulated on one machine.

Each site is a login node and M compute nodes, each its own network namespace;
`pwgen lab up` builds them, `pwgen lab down` removes every trace. One concept per
module:

    plan.py        names and addresses, derived from the options (pure)
    state.py       lab.json: what exists, so `down` removes exactly that
    system.py      subprocess, root and package checks, hardware facts
    wait.py        polling waits with deadlines
    procs.py       processes: alive, in which namespace, killing a namespace empty
    net.py         namespaces, veth pairs, bridges, routes
    nodes.py       the per-node holder process (hostname, mounts) and nsenter
    daemons.py     munged, sshd, slurmctld, slurmd: start, check, wait
    templating.py  jinja2 templates (templates/*.j2), written only on change
    sitefiles.py   a site's configs, keys and shared home
    controller.py  the controller's client key, sites.yaml, ssh_config, known_hosts
    users.py       the site users
    lifecycle.py   up and down
    status.py      what is alive, as data and as a rich table
    cli.py         the typer commands
"""
