"""Subscription resolvers and the per-process fan-out."""
