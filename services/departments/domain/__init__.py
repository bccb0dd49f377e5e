"""Domain model of the departments context: aggregates that take commands and return events (no I/O)."""
