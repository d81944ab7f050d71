"""Stream events every backend produces the same way: account updates after a transaction."""

from __future__ import annotations

from perpnet.core.errors import CoreError
from perpnet.core.markets import MarketSet
from perpnet.core.txs import (
    Deleverage,
    Deposit,
    ForcedWithdrawal,
    Liquidate,
    Trade,
    Transfer,
    Tx,
    Withdraw,
)
from perpnet.gateway.ports import AccountView, Publisher, Sequencer
from perpnet.gateway.schemas import account_out, jsonable
from perpnet.gateway.streams import account_topic

AccountKey = tuple[bytes, int]


def touched(tx: Tx) -> tuple[set[AccountKey], set[int]]:
    """The accounts a transaction changes: by (owner, subaccount), and by id."""
    keys: set[AccountKey] = set()
    ids: set[int] = set()
    match tx:
        case Deposit() | Withdraw() | ForcedWithdrawal():
            keys.add((tx.owner, tx.subaccount))
        case Transfer():
            keys |= {(tx.owner, tx.subaccount), (tx.to_owner, tx.to_subaccount)}
        case Trade():
            keys |= {(o.order.owner, o.order.subaccount) for o in (tx.maker, tx.taker)}
        case Liquidate():
            ids.add(tx.account_id)
            if tx.maker is not None:
                keys.add((tx.maker.order.owner, tx.maker.order.subaccount))
        case Deleverage():
            ids |= {tx.account_id, tx.offset_account_id}
        case _:
            pass
    return keys, ids


async def publish_accounts(hub: Publisher, sequencer: Sequencer, markets: MarketSet, tx: Tx,
                           listening: set[str]) -> None:  # fmt: skip
    """Send the new state of each account `tx` touched to its listeners (only if any)."""
    keys, ids = touched(tx)
    views: list[AccountView] = []
    try:
        for owner, subaccount in keys:
            if account_topic(owner) in listening:
                views.append(await sequencer.account_of(owner, subaccount))
        for account_id in ids:
            view = await sequencer.account(account_id)
            if account_topic(view.account.owner) in listening:
                views.append(view)
    except CoreError:
        return  # an account the transaction did not create after all
    if not views:
        return
    state = await sequencer.summary()
    for view in views:
        message = {"type": "account", **jsonable(account_out(view, state, markets))}
        hub.publish(account_topic(view.account.owner), message)
