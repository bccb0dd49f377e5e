"""Adapters of the clients context to other services (identity's internal HTTP API)."""
