"""The L1 bridge: deposits and forced requests into L2, proven batches onto L1, withdrawals tracked.

Three loops, each idempotent and restartable at any point:

- L1 watcher (every `poll_interval_s`): Deposited, ForcedWithdrawalRequested and
  Claimed events. An event counts once it is `confirmations` deep (the block
  holding it is the first confirmation), so a reorg shallower than that cannot
  make L2 credit a deposit L1 forgot. Confirmed deposits become Deposit
  transactions and forced requests ForcedWithdrawal transactions, in id order
  from the L2 counters (GetState): a restart resubmits nothing already applied.
- Poster: strictly in batch order. The next batch is L1's `next_batch_id`; once
  its proof is stored, the bridge verifies it in Python (verify_batch: an early
  warning), then posts update_state with the public inputs and either the proof
  packed with its statement (the rollup verifies it on chain: the default) or the
  plain proof after registering its fact (a fact-registry deployment), and marks
  the batch VERIFIED with its L1 transaction and gas. A batch the prover refused (FAILED),
  whose proof does not verify, or too large for update_state (the client refuses it
  before sending) blocks posting (`perpnet_bridge_blocked`, the reason logged).
- Tracker: each cut batch's withdrawals get a record (requested at the log
  entry's time, batched at the cut); proven and verified are stamped when the
  batch is posted, claimed when a Claimed event for the recipient is confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import grpc
import grpc.aio
from web3 import Web3
from web3.types import EventData, TxReceipt

from perpnet.bridge import metrics, records
from perpnet.bridge.statement import Statement, genesis_globals
from perpnet.core.state import ExchangeState
from perpnet.core.txs import Deposit, ForcedWithdrawal, Tx
from perpnet.l1.anvil import DEV_KEY
from perpnet.l1.client import BatchTooLargeError, RollupClient, Sender
from perpnet.l1.deploy import DEFAULT_PATH, Deployment
from perpnet.l1.stark_verifier import pack_batch_proof
from perpnet.proto.v1 import bridge_pb2, bridge_pb2_grpc
from perpnet.runtime import topics
from perpnet.runtime.clock import not_before, now_ms
from perpnet.runtime.config import ConfigError, Range, env_name
from perpnet.runtime.db import Database
from perpnet.runtime.follower import (
    ExchangeSettings,
    RefusedError,
    UnreachableError,
    submit_stamped,
)
from perpnet.runtime.grpc_server import Service, run_service
from perpnet.runtime.models import DepositRecord, WithdrawalRecord
from perpnet.runtime.redis import connect
from perpnet.runtime.sequencer_client import Counters, SequencerClient
from perpnet.stark.batch_proof import verify_batch

T = TypeVar("T")
R = TypeVar("R", DepositRecord, WithdrawalRecord)


@dataclass(frozen=True, kw_only=True)
class BridgeSettings(ExchangeSettings):
    """The exchange's settings (to read the log and genesis) and the L1 side."""

    l1_rpc_url: str = "http://127.0.0.1:8545"
    l1_deployment: str = str(DEFAULT_PATH)  # written by `perpnet l1 deploy` / the devnet
    operator_key: str = DEV_KEY  # 0x secret of an operator (and fact registrar) of the rollup
    confirmations: Annotated[int, Range(1, 1000)] = 2
    poll_interval_s: Annotated[float, Range(0.05, 600)] = 1.0
    # proven batches posted back to back per L1 round trip (a backlog drains in ~1 block)
    post_pipeline: Annotated[int, Range(1, 64)] = 8
    # Chaos knob: comma-separated 0x owners whose forced requests are never submitted (the
    # operator censors them), so a drill can let the grace period pass and freeze the rollup.
    ignore_forced_from: str = ""

    def __post_init__(self) -> None:
        self.ignored_owners()  # a malformed address stops the start, named

    def ignored_owners(self) -> frozenset[bytes]:
        try:
            owners = [bytes.fromhex(part.strip().removeprefix("0x")) for part in
                      self.ignore_forced_from.split(",") if part.strip()]  # fmt: skip
        except ValueError:
            owners = [b""]
        if any(len(owner) != 20 for owner in owners):
            var = env_name(self.service, "ignore_forced_from")
            raise ConfigError(f"{var}: {self.ignore_forced_from!r} is not 0x addresses")
        return frozenset(owners)


@dataclass(frozen=True, slots=True)
class Head:
    block: int
    safe: int  # the last block with enough confirmations (-1: none)


class BridgeServicer(bridge_pb2_grpc.BridgeServicer):
    def __init__(self, service: BridgeService) -> None:
        self.service = service

    async def _found(
        self,
        model: type[R],
        key: int,
        context: grpc.aio.ServicerContext[Any, Any],
        what: str,
    ) -> R:
        """The record, or NOT_FOUND for the caller."""
        record = await self.service.db.run(lambda s: s.get(model, key))
        if record is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no {what} {key}")
        assert record is not None
        return record

    async def GetDeposit(  # noqa: N802 - the proto's name
        self, request: bridge_pb2.GetDepositRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bridge_pb2.DepositInfo:
        record = await self._found(DepositRecord, request.l1_id, context, "deposit")
        return bridge_pb2.DepositInfo(
            l1_id=record.l1_id,
            owner=record.owner,
            subaccount=record.subaccount,
            amount=str(record.amount),
            status=record.status.value,
            stages=_stages(record.STAGES, record),
            l1_block=record.l1_block,
            l1_tx=record.l1_tx,
        )

    async def GetWithdrawal(  # noqa: N802 - the proto's name
        self, request: bridge_pb2.GetWithdrawalRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bridge_pb2.WithdrawalInfo:
        record = await self._found(WithdrawalRecord, request.id, context, "withdrawal")
        return bridge_pb2.WithdrawalInfo(
            id=record.id,
            account=record.account,
            recipient=record.recipient,
            amount=str(record.amount),
            status=record.status.value,
            stages=_stages(record.STAGES, record),
            batch_id=record.batch_id or 0,
        )

    async def GetL1Status(  # noqa: N802 - the proto's name
        self, request: bridge_pb2.GetL1StatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bridge_pb2.L1Status:
        return await self.service.l1(self.service.l1_status)


def _stages(stages: Any, record: Any) -> list[bridge_pb2.Stage]:
    return [
        bridge_pb2.Stage(name=status.value, at_ms=getattr(record, column))
        for status, column in stages.items()
        if getattr(record, column) is not None
    ]


class BridgeService(Service[BridgeSettings]):
    def __init__(self, settings: BridgeSettings) -> None:
        super().__init__(settings)
        self.config = settings.exchange_config()
        self.genesis_globals = genesis_globals(ExchangeState(self.config))
        self._l1_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="l1")
        self._tasks: list[asyncio.Task[None]] = []
        self._block_times: dict[int, int] = {}
        self._last_verified_at: float | None = None
        self._blocked_on: int | None = None
        self._next_tracked: int | None = None
        self._ignored = settings.ignored_owners()
        self._censored: set[int] = set()  # ignored request ids, logged once each

    def register(self, server: grpc.aio.Server) -> Iterable[str]:
        bridge_pb2_grpc.add_BridgeServicer_to_server(  # type: ignore[no-untyped-call]
            BridgeServicer(self), server
        )
        return ("perpnet.v1.Bridge",)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        s = self.settings
        self.db = await self.resources.enter_async_context(Database(s.database_url))
        await self.db.upgrade()
        self.redis = connect(s.redis_url)
        self.resources.push_async_callback(self.redis.aclose)
        self.sequencer = SequencerClient(s.peer("sequencer"))
        self.resources.push_async_callback(self.sequencer.close)
        self.deployment = Deployment.load(Path(s.l1_deployment))
        w3 = Web3(Web3.HTTPProvider(s.l1_rpc_url))
        key = bytes.fromhex(s.operator_key.removeprefix("0x"))
        self.client: RollupClient = self.deployment.client(w3, Sender(w3, key=key))
        self.w3 = w3
        start = self.deployment.block
        self.scan_from = {"Deposited": start, "ForcedWithdrawalRequested": start, "Claimed": start}
        self._tasks = [
            asyncio.create_task(self._loop("l1", self.watch_l1)),
            asyncio.create_task(self._loop("post", self.post_ready, wake=self._proof_announced)),
            asyncio.create_task(self._loop("track", self.track)),
        ]

    async def ready(self) -> bool:
        return await self.db.ping() and await self.l1(self.w3.is_connected)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._l1_thread.shutdown(wait=True)

    async def l1(self, call: Callable[..., T], *args: Any) -> T:
        """Run a blocking web3 call on the one L1 thread (calls stay in order)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._l1_thread, partial(call, *args)
        )

    async def _loop(
        self, name: str, step: Callable[[], Any], wake: Callable[[], Any] | None = None
    ) -> None:
        last_error = ""
        while not self.stopping.is_set():
            try:
                await step()
                last_error = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.ERRORS.labels(name).inc()
                if repr(exc) != last_error:  # once per distinct failure, not every poll
                    self.log.warning(f"{name} loop failed", exc_info=True)
                    last_error = repr(exc)
            if wake is None:
                await asyncio.sleep(self.settings.poll_interval_s)
            else:
                with contextlib.suppress(Exception):
                    await wake()

    # ------------------------------------------------------------ L1 events

    def _head(self) -> Head:
        block = int(self.w3.eth.block_number)
        metrics.L1_HEAD.set(block)
        return Head(block, block - self.settings.confirmations + 1)

    def _block_time_ms(self, block: int) -> int:
        if block not in self._block_times:
            self._block_times[block] = int(self.w3.eth.get_block(block)["timestamp"]) * 1000
        return self._block_times[block]

    def _events(self, name: str, to_block: int) -> list[EventData]:
        start = self.scan_from[name]
        return [] if to_block < start else self.client.events(name, start, to_block)

    async def watch_l1(self) -> None:
        head = await self.l1(self._head)
        counters = await self.sequencer.counters()
        await self._deposits(head, counters)
        await self._forced(head, counters)
        await self._claims(head)

    async def _deposits(self, head: Head, counters: Counters) -> None:
        events = await self.l1(self._events, "Deposited", head.block)
        seen = []
        for e in events:
            args = e["args"]
            seen.append(
                records.SeenDeposit(
                    int(args["deposit_id"]),
                    bytes.fromhex(args["owner"][2:]),
                    int(args["subaccount"]),
                    int(args["amount"]),
                    e["blockNumber"],
                    await self.l1(self._block_time_ms, e["blockNumber"]),
                    bytes(e["transactionHash"]),
                    e["blockNumber"] <= head.safe,
                )
            )
        await self.db.run(partial(records.record_deposits, seen=seen, at_ms=now_ms()))
        confirmed = sorted((d for d in seen if d.confirmed), key=lambda d: d.deposit_id)
        expected = counters.next_deposit_id
        for d in confirmed:
            if d.deposit_id < expected:
                continue
            if d.deposit_id != expected:
                break  # an earlier one is not confirmed yet (or was missed): wait
            # never behind the sequencer's clock as this poll read it: another submitter's
            # host clock may run ahead of ours by more than restamping makes up
            at = not_before(counters.clock_ms)
            tx = Deposit(at, d.deposit_id, d.owner, d.subaccount, d.amount)
            if not await self._submit(tx, "deposit", d.deposit_id):
                break
            expected += 1
        pending = [d.block for d in confirmed if d.deposit_id >= expected]
        self.scan_from["Deposited"] = min([*pending, head.safe + 1])

    async def _forced(self, head: Head, counters: Counters) -> None:
        events = await self.l1(self._events, "ForcedWithdrawalRequested", head.safe)
        expected = counters.next_forced_id
        for e in sorted(events, key=lambda e: int(e["args"]["request_id"])):
            args = e["args"]
            request_id = int(args["request_id"])
            if request_id < expected:
                continue
            if request_id != expected:
                break
            if bytes.fromhex(args["owner"][2:]) in self._ignored:
                if request_id not in self._censored:
                    self._censored.add(request_id)
                    self.log.warning(
                        "ignoring a forced request (chaos)", extra={"l1_id": request_id}
                    )
                break  # requests are served in order: this one blocks the ones after it
            tx = ForcedWithdrawal(
                not_before(counters.clock_ms),  # as a deposit's
                request_id,
                bytes.fromhex(args["owner"][2:]),
                int(args["subaccount"]),
                int(args["amount"]),
                bytes.fromhex(args["recipient"][2:]),
            )
            if not await self._submit(tx, "forced withdrawal", request_id):
                break
            expected += 1
        pending = [e["blockNumber"] for e in events if int(e["args"]["request_id"]) >= expected]
        self.scan_from["ForcedWithdrawalRequested"] = min([*pending, head.safe + 1])
        await self.l1(self._forced_metrics)

    def _forced_metrics(self) -> None:
        rollup = self.client.rollup.functions
        unserved, total = rollup.next_unserved_forced().call(), rollup.next_forced_id().call()
        metrics.FORCED_PENDING.set(total - unserved)
        if total > unserved:
            deadline = self.client.forced_request(unserved).deadline
            now = int(self.w3.eth.get_block("latest")["timestamp"])
            metrics.FORCED_DEADLINE.set(deadline - now)
        else:
            metrics.FORCED_DEADLINE.set(self.deployment.grace_period)

    async def _submit(self, tx: Tx, what: str, l1_id: int) -> bool:
        """Credit an L1 request on L2; False (and the next poll tries again) if refused.

        Stamped with our clock, so a trade stamped later that reaches the sequencer first
        would refuse it as CLOCK: `submit_stamped` restamps it instead of waiting a poll.
        A sequencer that does not answer is the poll loop's error (counted, logged once).
        """
        try:
            seq = await submit_stamped(self.sequencer, tx)
        except UnreachableError:
            raise
        except RefusedError as refused:
            why = {"l1_id": l1_id, "code": refused.code, "why": refused.message}
            self.log.warning(f"{what} refused", extra=why)
            return False
        if isinstance(tx, Deposit):
            at = now_ms()
            await self.db.run(partial(records.mark_credited, deposit_id=l1_id, seq=seq, at_ms=at))
        self.log.info(f"{what} credited", extra={"l1_id": l1_id, "seq": seq})
        return True

    async def _claims(self, head: Head) -> None:
        events = await self.l1(self._events, "Claimed", head.safe)
        for e in events:
            recipient = bytes.fromhex(e["args"]["recipient"][2:])
            block_ms = await self.l1(self._block_time_ms, e["blockNumber"])
            claim = partial(
                records.mark_claimed, recipient=recipient, block_time_ms=block_ms, at_ms=now_ms()
            )
            await self.db.run(claim)
        self.scan_from["Claimed"] = max(self.scan_from["Claimed"], head.safe + 1)

    # ------------------------------------------------------------ posting

    async def _proof_announced(self) -> None:
        """Wait for a new entry on topics.PROOFS, or the poll interval."""
        block = round(self.settings.poll_interval_s * 1000)
        await self.redis.xread({topics.PROOFS: "$"}, count=1, block=block)

    async def post_ready(self) -> None:
        while await self.post_next():
            pass

    async def post_next(self) -> bool:
        """Post L1's next proven batches (up to `post_pipeline`, back to back in one L1
        round trip); True if any was posted."""
        next_id = await self.l1(self.client.next_batch_id)
        metrics.HIGHEST_BATCH.labels("verified").set(next_id - 1)
        for missed in await self.db.run(partial(records.verified_before, next_batch_id=next_id)):
            # Posted before a crash, not recorded: L1 is the truth.
            mark = partial(records.mark_verified, batch_id=missed, l1_tx=None, gas=None)
            await self.db.run(partial(mark, at_ms=now_ms()))
        ready: list[tuple[int, bytes, bytes]] = []
        while len(ready) < self.settings.post_pipeline:
            batch_id = next_id + len(ready)
            found = await self.db.run(partial(records.batch_to_post, batch_id=batch_id))
            if found is None or (found.proof is None and found.failure is None):
                break
            checked = await self._checked(found)
            if isinstance(checked, str):
                if not ready:
                    return self._block(batch_id, checked)
                break  # post the ones before it; the next round stops here
            ready.append((batch_id, found.public_inputs, checked))
        self._unblock()
        if not ready:
            return False
        for batch_id, _, _ in ready:
            await self.db.run(partial(records.mark_posted, batch_id=batch_id, at_ms=now_ms()))
        posts = [(pi, proof) for _, pi, proof in ready]
        landed: list[tuple[TxReceipt, ...]]
        if self.client.verifier_kind == "stark":
            updates, error = await self.l1(self.client.post_updates, posts)
            landed = [(update,) for update in updates]
        else:
            pairs, error = await self.l1(self.client.post_batches, posts)
            landed = list(pairs)
        for (batch_id, _, _), receipts in zip(ready, landed, strict=False):
            await self._verified(batch_id, receipts)
        if error is not None:
            if not landed and isinstance(error, BatchTooLargeError):
                return self._block(next_id, str(error))  # no retry can help: a clear stop
            if not landed:
                raise error
            self.log.warning("posting stopped", extra={"after": next_id + len(landed) - 1})
        return bool(landed)

    async def _checked(self, found: records.ToPost) -> bytes | str:
        """The proof bytes to post for a stored batch (packed with its statement when the
        rollup verifies on chain), or why it cannot be posted: refused by the prover, or
        a proof the off-chain verifier rejects (the early warning before L1)."""
        if found.failure is not None or found.proof is None:
            return f"the prover refused it: {found.failure}"
        old_globals = self.genesis_globals if found.old_globals is None else found.old_globals
        statement = Statement.of(found.public_inputs, found.state_diff, old_globals)
        try:
            await asyncio.to_thread(
                verify_batch, statement.public_inputs, statement.diff, found.proof
            )
        except Exception as exc:
            metrics.POSTED.labels("rejected").inc()
            return f"its proof does not verify: {exc!r}"
        if self.client.verifier_kind == "stark":
            return pack_batch_proof(statement.public_inputs, statement.diff, found.proof)
        return found.proof

    async def _verified(self, batch_id: int, receipts: tuple[TxReceipt, ...]) -> None:
        """Record a batch verified on L1: `receipts` are its (fact,) update transactions."""
        *facts, update = receipts
        gas = sum(int(r["gasUsed"]) for r in receipts)
        for fact in facts:
            metrics.STATE_UPDATE_GAS.labels("fact").observe(int(fact["gasUsed"]))
        metrics.STATE_UPDATE_GAS.labels("update").observe(int(update["gasUsed"]))
        metrics.LAST_GAS.set(gas)
        metrics.POSTED.labels("verified").inc()
        await self.db.run(
            partial(
                records.mark_verified,
                batch_id=batch_id,
                l1_tx=bytes(update["transactionHash"]),
                gas=gas,
                at_ms=now_ms(),
            )
        )
        now = time.monotonic()
        if self._last_verified_at is not None:
            metrics.PROOF_CADENCE.observe(now - self._last_verified_at)
        self._last_verified_at = now
        metrics.HIGHEST_BATCH.labels("verified").set(batch_id)
        self.log.info("batch verified on L1", extra={"batch_id": batch_id, "gas": gas})

    def _block(self, batch_id: int, why: str) -> bool:
        metrics.BLOCKED.set(1)
        if self._blocked_on != batch_id:
            self._blocked_on = batch_id
            self.log.error("cannot post batch", extra={"batch_id": batch_id, "why": why})
        return False

    def _unblock(self) -> None:
        metrics.BLOCKED.set(0)
        self._blocked_on = None

    # ------------------------------------------------------------ tracking

    async def track(self) -> None:
        """Record the withdrawals of every batch cut since the last pass."""
        if self._next_tracked is None:
            self._next_tracked = await self.db.run(records.last_tracked_batch) + 1
        domain = self.config.domain
        while True:
            batch_id = self._next_tracked
            track = partial(records.track_withdrawals, batch_id=batch_id, domain=domain)
            if await self.db.run(track) is None:
                break
            self._next_tracked = batch_id + 1
        sequenced, proven = await self.db.run(records.highest)
        metrics.HIGHEST_BATCH.labels("sequenced").set(sequenced)
        metrics.HIGHEST_BATCH.labels("proven").set(proven)

    def l1_status(self) -> bridge_pb2.L1Status:
        rollup = self.client.rollup.functions
        verified = max(self.client.next_batch_id() - 1, 0)  # 0 also before any batch
        return bridge_pb2.L1Status(
            chain_id=self.w3.eth.chain_id,
            head_block=self.w3.eth.block_number,
            rollup=bytes.fromhex(self.client.rollup.address[2:]),
            posted_batch_id=verified,  # update_state verifies as it posts
            verified_batch_id=verified,
            verified_root=self.client.state_root(),
            frozen=self.client.frozen(),
            pending_forced=rollup.next_forced_id().call() - rollup.next_unserved_forced().call(),
        )


def main() -> int:
    return run_service(BridgeService, BridgeSettings, "bridge")
