"""perpnet: a local testnet of a perpetual-futures exchange on a STARK rollup."""

__version__ = "0.1.0"
