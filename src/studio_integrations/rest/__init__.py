"""Plain HTTP aliases of GraphQL operations, for callers that cannot speak GraphQL."""
