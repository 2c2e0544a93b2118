"""The HTTP layer: wire schemas, the error table, routes."""
