"""Thin resolvers: check input, call domain/, map results to schema types."""
