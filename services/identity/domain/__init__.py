"""Domain model of the identity context: aggregates that take commands and return events (no I/O)."""
