"""Use cases: the only layer that puts stages and the database together."""
