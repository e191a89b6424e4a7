"""Governed actions per area. Plain async Python: no GraphQL types, unit-testable."""
