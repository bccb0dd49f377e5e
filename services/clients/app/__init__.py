"""Application layer of the clients context: load an aggregate, decide, append."""
