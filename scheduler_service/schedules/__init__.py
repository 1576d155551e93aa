"""Schedules: the domain types, cron and interval time math (`timing`), validation, the schedule
store, firing due ticks exactly once across scheduler processes, the timer that wakes this process,
the operations behind the schedule RPCs (`ops`), and the component that assembles them."""
