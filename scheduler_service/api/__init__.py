"""The scheduler's gRPC edge: `SchedulerService` (the client API, in `service`, delegating to the
run and schedule handlers), the `WorkerService` stream the crawlers hold (`workers`), request
validation, and the protobuf <-> domain conversion (`*_messages`). Protobuf stops here."""
