"""Failover for `pwgen run`: tasks move off failing sites; see each module for one part.

policy.py       Failover, the retry_handler: site-level failure -> another site
health.py       SiteHealth: avoid a site after K failures, re-admit after a cool-down
errors.py       which failures are the site's fault; pwgen's own site failures
dispatch.py     the submit hook: allowed sites per task, first choice, bash walltime
watch.py        SiteWatch: queue-wait budget, tasks lost in a broken tunnel
unavailable.py  the stand-in executor for a site unreachable at the start
defaults.py     the option defaults (K, cool-down, queue-wait budget, free site retries)

Import from the module that defines a name (`from pwgen.failover.policy import
Failover`): this package imports nothing, so `pwgen.failover.defaults` (read by the CLI
at startup) does not load Parsl.
"""
