"""Domain model of the notifier context.

Aggregates that take commands and return events; no I/O.
"""
