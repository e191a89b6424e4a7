"""Strawberry types, inputs and enums; ``schema.schema`` assembles the Schema."""
