"""Prover workers: prove batches from a Redis consumer group (python -m perpnet.prover)."""
