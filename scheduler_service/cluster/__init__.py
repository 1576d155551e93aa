"""The cluster view: which crawler is connected to which scheduler replica.

Every replica writes its connected crawlers into the shared `workers` table (`registry`) when they
connect and disconnect and, at a modest interval, refreshes them (`presence`), so ListWorkers on any
replica shows the whole cluster. Rows of a replica that died stop being refreshed, drop out of the
view and are deleted by the other replicas.
"""
