"""Domain model of the tickets context.

Aggregates that take commands and return events; no I/O.
"""
