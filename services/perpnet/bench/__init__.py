"""Micro-benchmarks of the pure core, run by `perpnet bench ...`."""
