"""The scheduler: owns runs (store, dispatch to crawlers, leases, live watches) and schedules."""
