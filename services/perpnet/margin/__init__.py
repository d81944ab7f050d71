"""The margin engine: the risk view of every account, pre-trade checks, liquidations,
insurance fund, deleveraging and funding (python -m perpnet.margin)."""
