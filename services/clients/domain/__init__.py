"""Domain model of the clients context: aggregates that take commands and return events (no I/O)."""
