"""Adapters of the tickets context to other services' HTTP APIs."""
