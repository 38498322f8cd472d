"""AsyncClient parity: the same calls through grpc.aio give what the sync client gives."""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest

import allidb
from allidb import Edge, Entity

from conftest import Daemon, Tenant


def run(coro):
    return asyncio.run(coro)


def entities(n: int, dim: int = 4):
    rng = np.random.default_rng(11)
    return [
        Entity(f"a{i:04d}", vector=rng.normal(size=dim), type="doc",
               attributes={"parity": str(i % 2)},
               edges=[Edge.to(f"a{(i + 1) % n:04d}", "next")])
        for i in range(n)
    ]


def test_async_client_matches_the_sync_client(tenant: Tenant) -> None:
    sync = tenant.client()
    data = entities(300)
    queries = np.random.default_rng(3).normal(size=(5, 4))

    async def scenario():
        async with allidb.AsyncClient(tenant.daemon.grpc_addr, api_key=tenant.api_key) as db:
            health = await db.health()
            written = await db.put_many(data, batch_size=50, concurrency=3)
            one = await db.get("a0007")
            missing = await db.get("nope")
            many = await db.get_many(["a0001", "nope", "a0002"])
            scanned = [e.id async for e in db.scan(page_size=37)]
            pages = [p async for p in db.scan_pages(page_size=100)]
            query = await db.query(queries[0], k=5, hops=1, explain=True, trace_id="aq")
            batch = await db.query_batch(queries, k=5, hops=0)
            walk = await db.traverse("a0000", max_hops=3)
            added = await db.add_edges([Edge("a0000", "a0100", "jump")])
            jumped = await db.traverse("a0000", max_hops=1, relations=["jump"])
            removed = await db.remove_edges([("a0000", "a0100", "jump")])
            deleted = await db.delete("a0299")
            deleted_again = await db.delete("a0299")
            with pytest.raises(allidb.InvalidArgument) as error:
                await db.query([1.0, 0.0], k=1)
            return (health, written, one, missing, many, scanned, pages, query, batch, walk,
                    added, jumped, removed, deleted, deleted_again, error.value)

    (health, written, one, missing, many, scanned, pages, query, batch, walk, added, jumped,
     removed, deleted, deleted_again, error) = run(scenario())

    assert health.healthy and health.version == sync.health().version
    assert (written.total, written.written, written.failed, written.batches) == (300, 300, 0, 6)
    assert one == sync.get("a0007")
    assert missing is None
    assert [e.id for e in many.entities] == ["a0001", "a0002"] and many.missing_ids == ["nope"]
    assert scanned == sorted(e.id for e in data)
    assert all(len(p.entities) <= 100 for p in pages) and len(pages) >= 3
    assert [e.id for p in pages for e in p.entities] == scanned
    sync_query = sync.query(queries[0], k=5, hops=1, explain=True, trace_id="aq")
    assert query.ids == sync_query.ids and query.trace_id == "aq"
    assert [r.path.entity_ids for r in query] == [r.path.entity_ids for r in sync_query]
    assert [r.ids for r in batch] == [sync.query(q, k=5, hops=0).ids for q in queries]
    assert walk.ids == ["a0000", "a0001", "a0002", "a0003"]
    assert walk.ids == sync.traverse("a0000", max_hops=3).ids
    assert added == 1 and jumped.ids == ["a0000", "a0100"] and removed == 1
    assert deleted is True and deleted_again is False and sync.get("a0299") is None
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message == "vector dimension mismatch: expected 4, got 2"


def test_async_put_many_takes_an_async_iterable_and_reports_failures(tenant: Tenant) -> None:
    async def source():
        for i in range(120):
            yield Entity(f"g{i:03d}", vector=[1.0, float(i)])
        yield Entity("bad", vector=[1.0, 2.0, 3.0])

    async def scenario():
        async with allidb.AsyncClient(tenant.daemon.grpc_addr, api_key=tenant.api_key) as db:
            with pytest.raises(allidb.PutManyError) as error:
                await db.put_many(source(), batch_size=25)
            ids = [e.id async for e in db.scan()]
            return error.value.result, ids

    result, ids = run(scenario())
    assert (result.total, result.written, result.failed) == (121, 120, 1)
    assert result.failures[0].id == "bad" and "expected 2, got 3" in result.failures[0].message
    assert ids == [f"g{i:03d}" for i in range(120)]


def test_async_errors_map_to_the_same_exceptions(auth_daemon: Daemon) -> None:
    async def scenario():
        async with allidb.AsyncClient(auth_daemon.grpc_addr) as anonymous:
            with pytest.raises(allidb.Unauthenticated) as error:
                await anonymous.get("a")
            return error.value

    error = run(scenario())
    assert error.message == "unauthenticated: missing API key (x-allidb-api-key)"


def test_async_put_carries_the_ttl(tenant: Tenant) -> None:
    async def scenario():
        async with allidb.AsyncClient(tenant.daemon.grpc_addr, api_key=tenant.api_key) as db:
            await db.put(Entity("brief", vector=[1.0, 0.0], ttl_secs=1))
            written = await db.get("brief")
            with pytest.raises(allidb.InvalidArgument, match="entity.ttl_secs"):
                await db.put(Entity("bad", vector=[1.0, 0.0], ttl_secs=630720001))
            await asyncio.sleep(max(0.0, (written.expires_at_nanos - time.time_ns()) / 1e9) + 0.05)
            return written, await db.get("brief")

    written, after = run(scenario())
    assert written is not None and written.expires_at_nanos > 0
    assert after is None
