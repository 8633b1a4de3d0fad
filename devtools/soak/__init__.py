"""The soak: the whole product on one machine, under faults, for a set time, measured.

``python -m devtools soak --connections 2000 --minutes 10`` starts its own
PostgreSQL servers (the partner's, and the sandbox's apart from it) and Redis (embedded, spare
ports, a temporary folder), the Bipsync sandbox, the partner's web processes, refresh and sync
workers and one beat, each a subprocess logging to a file; creates the connections with
short-lived access tokens (a few of them syncing Bipsync research); injects faults on a schedule
while syncs run and a signed-in person uses the pages; samples the database once a second; and
reports whether any connection was lost, went without a valid access token outside the fault
windows, had a document wrongly deleted, or showed a person a server error. Everything it started
is stopped and deleted at the end, on Ctrl-C or on failure too.

One job per module:

- :mod:`.config`     the command's options and the timings derived from the token lifetime
- :mod:`.settings`   Django settings of the soak's partner processes (production settings, with the
                     refresh timings scaled to short-lived tokens)
- :mod:`.processes`  a subprocess with its log file, in its own process group; stop, kill, restart
- :mod:`.stack`      starting and stopping the servers and the product's processes
- :mod:`.sandbox`    the sandbox admin API client: world set-up, faults, revocations, counters
- :mod:`.partner`    run inside a partner Django process: seed the connections, verify at the end
- :mod:`.faults`     the fault schedule and the thread that applies it
- :mod:`.sampler`    read-only sampling: time without a valid token, statuses, refresh counters
- :mod:`.visitor`    a signed-in person's page views (and Sync now) throughout, faults included
- :mod:`.report`     figures, acceptance, the table and the JSON
- :mod:`.runner`     the command: set-up, the timed run with its progress line, clean-up
"""
