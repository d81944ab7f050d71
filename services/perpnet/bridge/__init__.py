"""The L1 bridge: deposits and forced requests in, proven batches out (python -m perpnet.bridge)."""
