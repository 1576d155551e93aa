"""`SqlRunStore`, the run store on SQLAlchemy (SQLite and PostgreSQL): its transactions (`store`),
the database threads they run on (`threads`), and their building blocks: creating runs, one run's
state transitions, and read queries."""
