"""Reproducible benchmarks of the back office; run ``python -m bench.run``."""
