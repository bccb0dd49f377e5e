"""Application layer of the identity context: load an aggregate, decide, append."""
