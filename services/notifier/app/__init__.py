"""Application layer of the notifier context: load an aggregate, decide, append."""
