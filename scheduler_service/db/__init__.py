"""The scheduler's database schema: the SQLAlchemy tables of runs, steps, events, idempotency keys,
schedules and firings (`models`), and their Alembic migrations."""
