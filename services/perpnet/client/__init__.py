"""The perpnet client: a small Python SDK (sdk) and the `perpnet client` CLI sub-app (cli)."""
