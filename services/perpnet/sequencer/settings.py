"""The sequencer's settings: PERPNET_SEQUENCER_<NAME>, else PERPNET_<NAME>, else the default.

The exchange configuration (EIP-712 domain, oracle signers and quorum, price
age, funding interval and period) comes from the runtime's ExchangeSettings,
which every replica (margin engine, matcher, gateway, prover) reads from the
same variables. It must not change over the life of one database: the log is
replayed under it at start, and a transaction it refuses then (say, an oracle
tick from a signer since removed) stops the start-up with an error naming
it. `perpnet devnet` generates the oracle keys and passes their addresses in
PERPNET_ORACLE_SIGNERS; with none set, every oracle tick is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from perpnet.core.batch import statement_growth_bound
from perpnet.runtime.config import ConfigError, Range
from perpnet.runtime.follower import ExchangeSettings


@dataclass(frozen=True, kw_only=True)
class SequencerSettings(ExchangeSettings):
    batch_interval_ms: Annotated[int, Range(1, 3_600_000)] = 2_000
    batch_max_txs: Annotated[int, Range(1, 100_000)] = 512
    # A batch is also cut before its proof statement could pass this many bytes: the
    # on-chain verifier's buffer (stark_lib.MAX_PUBLIC). Many distinct accounts per batch
    # fill it before 512 transactions do; a larger batch could never be posted.
    batch_max_statement_bytes: Annotated[int, Range(1_024, 16_777_216)] = 172_032
    cut_empty_batches: bool = False  # also cut a batch on an interval with no transactions
    # Submissions applied per database transaction (group commit); it also bounds how
    # long one group holds the event loop, since applying runs on it.
    group_max_txs: Annotated[int, Range(1, 10_000)] = 256
    # Skip signature checks: only for a private network whose callers all verify.
    trust_callers: bool = False
    # State checkpoints (perpnet.sequencer.checkpoints): one at the first cut after this many
    # batches or log entries since the last (0 turns that trigger off); the newest
    # `checkpoint_keep` are kept (0: none are written). Recovery replays only the log after one.
    checkpoint_batches: Annotated[int, Range(0, 1_000_000)] = 50
    checkpoint_txs: Annotated[int, Range(0, 100_000_000)] = 20_000
    checkpoint_keep: Annotated[int, Range(0, 1_000)] = 3

    def __post_init__(self) -> None:
        config = self.exchange_config()  # a bad exchange configuration stops the start, named
        least = 2 * statement_growth_bound(len(config.markets.markets), config.tree_depth)
        if self.batch_max_statement_bytes < least:
            raise ConfigError(
                f"PERPNET_SEQUENCER_BATCH_MAX_STATEMENT_BYTES={self.batch_max_statement_bytes} "
                f"leaves no room: at least {least} (twice what one transaction can add)"
            )
