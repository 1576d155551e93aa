"""The fault suite: real `ghpulse` processes crawling the fake GitHub while the suite kills them,
storms GitHub and cuts the database; each case's data is compared with a fault-free crawl.

`catalog` names the faults, `cluster` starts the processes and databases, `proxy` is the TCP
proxy in front of PostgreSQL, `observe` watches runs and snapshots what was crawled, `strike`
applies one fault, `cases` runs one case, `suite` runs them all and `report` writes
RELIABILITY.md. Entry point: `bench/fault_suite.py`.
"""
