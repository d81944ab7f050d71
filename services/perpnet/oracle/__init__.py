"""The oracle aggregator: sources, the median rule, signed ticks (python -m perpnet.oracle)."""
