"""Running runs: the orchestrator that applies every store transition to watchers, crawlers and
metrics; the dispatcher that hands runs to connected crawlers; the event broker that fans events
out to watchers; and the sweeper that applies time (leases, deadlines, retention)."""
