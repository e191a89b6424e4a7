"""Event envelope, transactional outbox, and the bus."""
