"""Background workers: outbox relay, health prober, webhook dispatcher, rotation scheduler.

Each claims its work from the database (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite is
single-process and serialises writers), so replicas share work and none is done twice.
"""
