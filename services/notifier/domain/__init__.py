"""Domain model of the notifier context: aggregates that take commands and return events (no I/O)."""
