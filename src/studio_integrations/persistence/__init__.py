"""SQLAlchemy models, the engine/session, tenant-scoped repositories and migrations."""
