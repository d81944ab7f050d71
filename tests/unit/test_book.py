"""The order book structure: keys, levels, lazy heap deletion, depth, impact prices."""

from __future__ import annotations

from test_matching_kit import BTC, LOT, order

from perpnet.core.book import Book, Entry, Side
from perpnet.core.markets import USD


def entry(side: str, lots: int, price: int, seq: int) -> Entry:
    return Entry(order("book", side, lots, price, nonce=seq), lots * LOT, seq)


def test_keys_make_better_prices_smaller_on_both_sides() -> None:
    assert entry("buy", 1, 100, 1).key == -100 * USD
    assert entry("sell", 1, 100, 2).key == 100 * USD


def test_levels_keep_arrival_order_and_totals() -> None:
    side = Side(is_bid=True)
    a, b, c = entry("buy", 1, 100, 1), entry("buy", 2, 100, 2), entry("buy", 4, 99, 3)
    for e in (a, b, c):
        side.add(e)
    assert list(side.entries()) == [a, b, c]
    assert side.depth(5) == [(100 * USD, 3 * LOT), (99 * USD, 4 * LOT)]
    side.remove(a)
    assert side.depth(1) == [(100 * USD, 2 * LOT)]
    assert a.side is None and b.side is side


def test_emptied_levels_are_skipped_lazily_and_keys_are_not_duplicated() -> None:
    side = Side(is_bid=False)
    first = entry("sell", 1, 100, 1)
    side.add(first)
    side.add(entry("sell", 1, 101, 2))
    side.remove(first)
    assert side.heap[0] == 100 * USD  # stale, still in the heap
    assert side.best_key() == 101 * USD
    again = entry("sell", 1, 101, 3)
    side.add(again)
    side.remove(again)
    side.add(entry("sell", 1, 101, 4))
    assert sorted(side.heap) == [101 * USD]


def test_a_removed_then_refilled_level_reuses_its_stale_heap_key() -> None:
    side = Side(is_bid=True)
    low, high = entry("buy", 1, 99, 1), entry("buy", 1, 100, 2)
    side.add(low)
    side.add(high)
    side.remove(low)
    side.add(entry("buy", 1, 99, 3))
    assert len(side.heap) == 2
    assert side.depth(5) == [(100 * USD, LOT), (99 * USD, LOT)]


def test_book_best_prices_and_entries() -> None:
    book = Book(BTC)
    assert (book.best_bid(), book.best_ask()) == (None, None)
    bid, ask = entry("buy", 1, 99, 1), entry("sell", 1, 101, 2)
    book.own(True).add(bid)
    book.own(False).add(ask)
    assert (book.best_bid(), book.best_ask()) == (99 * USD, 101 * USD)
    assert book.opposite(True) is book.asks
    assert list(book.entries()) == [bid, ask]


def test_impact_price_exactly_on_a_level_boundary() -> None:
    side = Side(is_bid=False)
    side.add(entry("sell", 10_000, 100, 1))  # 1 BTC at 100
    side.add(entry("sell", 10_000, 200, 2))  # 1 BTC at 200
    assert side.impact_price(100 * USD, BTC.size_scale) == 100 * USD
    assert side.impact_price(300 * USD, BTC.size_scale) == 150 * USD
    assert side.impact_price(301 * USD, BTC.size_scale) is None
    # $200 = 1 BTC at 100 and 0.5 BTC at 200 -> 133.33.. rounded up for a buyer
    assert side.impact_price(200 * USD, BTC.size_scale) == 133_333_334
