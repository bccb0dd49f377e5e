"""Domain model of the clients context.

Aggregates that take commands and return events; no I/O.
"""
