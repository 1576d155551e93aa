"""Several scheduler replicas on one PostgreSQL database: the NOTIFY a write transaction sends
(`notice`), the one LISTEN connection per process (`listener`), and what a notice wakes here: the
dispatcher, retry timers and the run watchers (`feed`). SQLite has none of it: one process, whose
wake-ups stay in process."""
