"""The matcher: one price-time priority order book per market (python -m perpnet.matcher)."""
