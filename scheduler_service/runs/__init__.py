"""Runs as the scheduler knows them: the domain types (`model`), trigger validation, the retry
policy, and the durable run store (`store`, the interface documented once) with its SQLAlchemy
implementation in `sql`."""
