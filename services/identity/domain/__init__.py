"""Domain model of the identity context.

Aggregates that take commands and return events; no I/O.
"""
