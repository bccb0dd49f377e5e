"""Application layer of the tickets context: load an aggregate, decide, append."""
