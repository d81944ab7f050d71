"""Names every service agrees on: Redis streams, consumer groups, well-known keys.

Data flow (see DESIGN.md):
- `TXLOG`: every transaction the sequencer committed, in order
  (fields: seq, tx = encode_tx bytes, batch_id). Followers (margin engine,
  matcher, gateway) rebuild their views from it; the sequencer's database log
  is the durable source, the stream a fast feed (trimmed, approximate MAXLEN).
- `BATCHES`: one job per batch cut (fields: batch_id); prover workers consume
  it through the `PROVERS` consumer group (a job held by a dead worker is
  reclaimed with XAUTOCLAIM).
- `PROOFS`: one entry per proven batch (fields: batch_id, prover); the bridge
  posts batches to L1 strictly in batch order.
- `PRICES`: signed oracle ticks as they are produced (fields: market_id, price,
  tx), for gateway streams.
"""

from __future__ import annotations

TXLOG = "perpnet:txlog"
BATCHES = "perpnet:batches"
PROOFS = "perpnet:proofs"
PRICES = "perpnet:prices"
PROVERS = "provers"
TXLOG_MAXLEN = 1_000_000
