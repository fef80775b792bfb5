"""The defaults of `pwgen run`'s failover options, in one place.

`pwgen.cli` (option defaults), `pwgen.run.RunOptions` and the failover classes read
them from here. This module imports nothing, so the CLI reads it without loading Parsl.
"""

#: Site-level failures in a row after which a site is avoided (`--avoid-after`).
AVOID_AFTER = 3
#: Seconds an avoided site is left alone before it is tried again (`--cool-down`).
COOL_DOWN = 60.0
#: Seconds a site may keep tasks waiting with no worker connected (`--queue-wait`).
QUEUE_WAIT = 600.0
#: Site-level failures of one task that cost it nothing (later ones cost 1).
SITE_RETRIES = 5
