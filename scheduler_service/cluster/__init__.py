"""Several scheduler replicas on one PostgreSQL database.

Wake-ups: the NOTIFY a write transaction sends (`notice`), the one LISTEN connection per process
(`listener`), and what a notice wakes here: the dispatcher, retry timers and the run watchers
(`feed`). SQLite has none of it: one process, whose wake-ups stay in process.

The cluster view: every replica writes its connected crawlers into the shared `workers` table
(`registry`) when they connect and disconnect and, at a modest interval, refreshes them
(`presence`), so ListWorkers on any replica shows the whole cluster. Rows of a replica that died
stop being refreshed, drop out of the view and are deleted by the other replicas.
"""
