"""Domain model of the departments context.

Aggregates that take commands and return events; no I/O.
"""
