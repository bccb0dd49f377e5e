"""Domain model of the tickets context: aggregates that take commands and return events (no I/O)."""
