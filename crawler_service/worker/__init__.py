"""The crawler's side of the scheduler <-> crawler protocol: the connection that holds one stream to
the scheduler (`connection.Worker`), the attempts it holds and their leases (`attempts`), the
execution of one attempt's steps (`runner`), the ordered buffer of reports (`outbox`) and the
conversion to and from `WorkerService` messages (`messages`)."""
