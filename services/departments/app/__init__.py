"""Application layer of the departments context: load an aggregate, decide, append."""
