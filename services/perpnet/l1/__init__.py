"""L1: the rollup's Vyper contracts on a real EVM devnode (anvil), and their Python client."""
