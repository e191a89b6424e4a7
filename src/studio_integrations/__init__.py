"""Factory Studio integration-management API."""
