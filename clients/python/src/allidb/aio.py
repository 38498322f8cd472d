"""The asyncio client, :class:`AsyncClient` (``grpc.aio``): the methods of
:class:`allidb.Client` as coroutines, ``scan``/``scan_pages`` as async iterators."""

from __future__ import annotations

import asyncio
import time
from typing import (
    Any,
    AsyncIterable,
    AsyncIterator,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

import grpc
import grpc.aio

from . import _convert as conv
from ._channel import DEFAULT_MAX_MESSAGE_BYTES, PemLike, channel_config
from ._proto import allidb_pb2 as pb
from ._proto import allidb_pb2_grpc as rpc
from .client import _ENTITY_ERRORS, Progress, _failed_ids, _ProgressReporter
from .errors import AlliDBError, PutManyError, Unavailable, from_rpc_error
from .types import (
    DeleteByFilterResult,
    Edge,
    Entity,
    GetManyResult,
    Health,
    PutFailure,
    PutManyResult,
    QueryResponse,
    ScanPage,
    SourceDeleted,
    TraverseResult,
    VectorLike,
    Weights,
)

__all__ = ["AsyncClient"]


async def _aiter_batches(
    entities: Union[Iterable[conv.EntityLike], AsyncIterable[conv.EntityLike]],
    batch_size: int,
    batch_bytes: int,
) -> AsyncIterator[List[conv.EncodedEntity]]:
    if hasattr(entities, "__aiter__"):
        size = max(1, min(int(batch_size), conv.MAX_BATCH_ENTITIES))
        batch: List[conv.EncodedEntity] = []
        used = 0
        async for entity in entities:  # type: ignore[union-attr]
            item = conv.encode_entity(entity)
            used += len(item.data)
            batch.append(item)
            if len(batch) >= size or used >= batch_bytes:
                yield batch
                batch, used = [], 0
        if batch:
            yield batch
    else:
        for batch in conv.batches(entities, batch_size, batch_bytes):  # type: ignore[arg-type]
            yield batch


class AsyncClient:
    """An asyncio AlliDB client over one ``grpc.aio`` channel; same arguments and methods as
    :class:`allidb.Client`, awaited.

    >>> async with allidb.AsyncClient("127.0.0.1:7000") as db:
    ...     await db.put(allidb.Entity("paris", vector=[0.9, 0.1, 0.0]))
    ...     async for entity in db.scan():
    ...         print(entity.id)

    The channel belongs to the event loop it was created on: create the client inside it.
    """

    def __init__(
        self,
        addr: str = "127.0.0.1:7000",
        api_key: Optional[str] = None,
        *,
        tls: Optional[bool] = None,
        tls_ca: PemLike = None,
        tls_cert: PemLike = None,
        tls_key: PemLike = None,
        tls_server_name: Optional[str] = None,
        timeout: Optional[float] = 30.0,
        consistency: conv.ConsistencyLike = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        options: Optional[Sequence[Tuple[str, object]]] = None,
    ) -> None:
        config = channel_config(
            addr, api_key, tls, tls_ca, tls_cert, tls_key, tls_server_name,
            max_message_bytes, options,
        )
        self.addr = config.target
        if config.credentials is None:
            self._channel = grpc.aio.insecure_channel(config.target, options=config.options)
        else:
            self._channel = grpc.aio.secure_channel(
                config.target, config.credentials, options=config.options
            )
        self._stub = rpc.AlliDBStub(self._channel)
        # BatchPutEntities taking the request already serialized (put_many encodes it itself).
        self._batch_put_bytes = self._channel.unary_unary(
            "/allidb.AlliDB/BatchPutEntities",
            request_serializer=None,
            response_deserializer=pb.BatchPutEntitiesResponse.FromString,
        )
        self._metadata = config.metadata
        self.timeout = timeout
        self.consistency = consistency

    async def close(self) -> None:
        """Closes the channel."""
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: Any, request: Any, trace_id: Optional[str] = None) -> Any:
        metadata = self._metadata
        if trace_id:
            metadata = metadata + ((conv.TRACE_ID_HEADER, trace_id),)
        try:
            return await method(request, metadata=metadata, timeout=self.timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def _level(self, consistency: conv.ConsistencyLike) -> Any:
        return conv.consistency_level(consistency if consistency is not None else self.consistency)

    async def health(self) -> Health:
        """See :meth:`allidb.Client.health`."""
        reply = await self._call(self._stub.HealthCheck, pb.HealthCheckRequest())
        return conv.health_from_proto(reply)

    async def wait_ready(self, timeout: float = 30.0) -> Health:
        """See :meth:`allidb.Client.wait_ready`."""
        deadline = time.monotonic() + timeout
        last: Optional[BaseException] = None
        while True:
            try:
                health = await self.health()
                if health.healthy:
                    return health
                last = Unavailable(f"server status is {health.status!r}")
            except AlliDBError as error:
                last = error
            if time.monotonic() >= deadline:
                raise Unavailable(f"not ready after {timeout} s: {last}")
            await asyncio.sleep(0.05)

    async def put(
        self,
        entity: conv.EntityLike,
        *,
        consistency: conv.ConsistencyLike = None,
        merge: bool = False,
    ) -> str:
        """See :meth:`allidb.Client.put`."""
        request = pb.PutEntityRequest(
            entity=conv.entity_to_proto(entity),
            consistency_level=self._level(consistency),
            mode=conv.write_mode(merge),
        )
        reply = await self._call(self._stub.PutEntity, request)
        if not reply.success:
            raise AlliDBError(reply.error_message or "put failed", grpc.StatusCode.UNKNOWN)
        return reply.entity_id

    async def put_many(
        self,
        entities: Union[Iterable[conv.EntityLike], AsyncIterable[conv.EntityLike]],
        *,
        batch_size: int = 256,
        batch_bytes: int = 4 * 1024 * 1024,
        concurrency: int = 4,
        progress: Progress = False,
        consistency: conv.ConsistencyLike = None,
        raise_on_error: bool = True,
        merge: bool = False,
    ) -> PutManyResult:
        """See :meth:`allidb.Client.put_many`; ``entities`` may also be an async iterable."""
        total = len(entities) if hasattr(entities, "__len__") else None  # type: ignore[arg-type]
        level = self._level(consistency)
        result = PutManyResult()
        reporter = _ProgressReporter(progress, total)
        workers = max(1, int(concurrency))

        async def send(batch: List[conv.EncodedEntity]) -> Tuple[int, List[PutFailure]]:
            request = conv.batch_put_request(batch, level, merge)
            reply = await self._call(self._batch_put_bytes, request)
            failures: List[PutFailure] = []
            written = len(reply.entity_ids)
            if reply.failure_count or written < len(batch):
                for entity in _failed_ids(batch, reply.entity_ids):
                    try:
                        await self.put(entity.message(), consistency=consistency, merge=merge)
                        written += 1
                    except AlliDBError as error:
                        if error.code not in _ENTITY_ERRORS:
                            raise
                        failures.append(PutFailure(entity.entity_id, error.message))
            return written, failures

        def collect(done: Iterable["asyncio.Task[Tuple[int, List[PutFailure]]]"]) -> None:
            for task in done:
                written, failures = task.result()
                result.written += written
                result.failed += len(failures)
                result.failures.extend(failures)
                reporter.advance(written + len(failures))

        pending: Set["asyncio.Task[Tuple[int, List[PutFailure]]]"] = set()
        try:
            async for batch in _aiter_batches(entities, batch_size, batch_bytes):
                result.total += len(batch)
                result.batches += 1
                pending.add(asyncio.ensure_future(send(batch)))
                if len(pending) >= workers:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    collect(done)
            if pending:
                done, pending = await asyncio.wait(pending)
                collect(done)
        except BaseException:
            for task in pending:
                task.cancel()
            raise
        finally:
            reporter.close()
        if result.failures and raise_on_error:
            raise PutManyError(result)
        return result

    async def delete_by_source(
        self, source_id: str, *, consistency: conv.ConsistencyLike = None
    ) -> SourceDeleted:
        """See :meth:`allidb.Client.delete_by_source`."""
        request = pb.DeleteBySourceRequest(
            source_id=source_id, consistency_level=self._level(consistency)
        )
        reply = await self._call(self._stub.DeleteBySource, request)
        return SourceDeleted(deleted=reply.deleted, updated=reply.updated)

    async def replace_source(
        self,
        source_id: str,
        entities: Iterable[conv.EntityLike],
        *,
        consistency: conv.ConsistencyLike = None,
    ) -> SourceDeleted:
        """See :meth:`allidb.Client.replace_source`."""
        request = pb.ReplaceSourceRequest(
            source_id=source_id,
            entities=[conv.entity_to_proto(e) for e in entities],
            consistency_level=self._level(consistency),
        )
        reply = await self._call(self._stub.ReplaceSource, request)
        return SourceDeleted(deleted=reply.deleted, updated=reply.updated, written=reply.written)

    async def delete_by_filter(
        self,
        where: Any = None,
        *,
        entity_types: Optional[Sequence[str]] = None,
        dry_run: bool = False,
        max_deletes: Optional[int] = None,
        confirm: bool = False,
        consistency: conv.ConsistencyLike = None,
    ) -> DeleteByFilterResult:
        """See :meth:`allidb.Client.delete_by_filter`."""
        request = conv.delete_by_filter_request(
            where, entity_types, dry_run, max_deletes, confirm, self._level(consistency)
        )
        reply = await self._call(self._stub.DeleteByFilter, request)
        return DeleteByFilterResult(matched=reply.matched, deleted=reply.deleted, more=reply.more)

    async def delete(self, entity_id: str, *, consistency: conv.ConsistencyLike = None) -> bool:
        """See :meth:`allidb.Client.delete`."""
        request = pb.DeleteEntityRequest(entity_id=entity_id, consistency_level=self._level(consistency))
        return bool((await self._call(self._stub.DeleteEntity, request)).found)

    async def add_edges(
        self,
        edges: Iterable[Union[Edge, Sequence[Any]]],
        *,
        consistency: conv.ConsistencyLike = None,
    ) -> int:
        """See :meth:`allidb.Client.add_edges`."""
        messages = [conv.edge_to_proto(e) for e in edges]
        count = 0
        for part in conv.chunked(messages, conv.MAX_EDGES):
            request = pb.AddEdgesRequest(edges=part, consistency_level=self._level(consistency))
            count += (await self._call(self._stub.AddEdges, request)).edge_count
        return count

    async def remove_edges(
        self,
        edges: Iterable[Union[Edge, Sequence[str]]],
        *,
        consistency: conv.ConsistencyLike = None,
    ) -> int:
        """See :meth:`allidb.Client.remove_edges`."""
        keys = [conv.edge_key(e) for e in edges]
        count = 0
        for part in conv.chunked(keys, conv.MAX_EDGES):
            request = pb.RemoveEdgesRequest(edges=part, consistency_level=self._level(consistency))
            count += (await self._call(self._stub.RemoveEdges, request)).edge_count
        return count

    async def get(
        self, entity_id: str, *, consistency: conv.ConsistencyLike = None
    ) -> Optional[Entity]:
        """See :meth:`allidb.Client.get`."""
        request = pb.GetEntityRequest(entity_id=entity_id, consistency_level=self._level(consistency))
        reply = await self._call(self._stub.GetEntity, request)
        return conv.entity_from_proto(reply.entity) if reply.found else None

    async def get_many(
        self, entity_ids: Iterable[str], *, consistency: conv.ConsistencyLike = None
    ) -> GetManyResult:
        """See :meth:`allidb.Client.get_many`."""
        ids = list(entity_ids)
        out = GetManyResult()
        for part in conv.chunked(ids, conv.MAX_GET_IDS):
            request = pb.GetEntitiesRequest(entity_ids=part, consistency_level=self._level(consistency))
            reply = await self._call(self._stub.GetEntities, request)
            out.entities.extend(conv.entity_from_proto(e) for e in reply.entities)
            out.missing_ids.extend(reply.missing_ids)
        return out

    async def scan_pages(
        self,
        start: Optional[str] = None,
        end: Optional[str] = None,
        *,
        page_size: int = 100,
        page_token: str = "",
        where: Optional[Any] = None,
    ) -> AsyncIterator[ScanPage]:
        """See :meth:`allidb.Client.scan_pages`."""
        token = page_token
        while True:
            request = conv.scan_request(start, end, page_size, token, where)
            reply = await self._call(self._stub.RangeScan, request)
            yield ScanPage(
                entities=[conv.entity_from_proto(e) for e in reply.entities],
                next_page_token=reply.next_page_token,
            )
            token = reply.next_page_token
            if not token:
                return

    async def scan(
        self,
        start: Optional[str] = None,
        end: Optional[str] = None,
        *,
        page_size: int = 100,
        where: Optional[Any] = None,
    ) -> AsyncIterator[Entity]:
        """See :meth:`allidb.Client.scan` (``async for entity in client.scan()``)."""
        async for page in self.scan_pages(start, end, page_size=page_size, where=where):
            for entity in page.entities:
                yield entity

    async def query(
        self,
        vector: Optional[VectorLike] = None,
        *,
        text: Optional[str] = None,
        fusion: Union[str, int, None] = None,
        lexical_weight: Optional[float] = None,
        k: int = 10,
        hops: Optional[int] = None,
        relations: Optional[Sequence[str]] = None,
        direction: conv.DirectionLike = "out",
        filters: Optional[Mapping[str, str]] = None,
        entity_types: Optional[Sequence[str]] = None,
        weights: Union[Weights, Mapping[str, float], None] = None,
        ef: Optional[int] = None,
        explain: bool = False,
        include_entity: bool = True,
        consistency: conv.ConsistencyLike = None,
        trace_id: Optional[str] = None,
        rank_constant: Optional[int] = None,
        **more: Any,
    ) -> QueryResponse:
        """See :meth:`allidb.Client.query`."""
        request = conv.query_request(
            vector, text=text, fusion=fusion, lexical_weight=lexical_weight,
            rank_constant=rank_constant, k=k, hops=hops, relations=relations,
            direction=direction, filters=filters, entity_types=entity_types, weights=weights,
            ef=ef, explain=explain, include_entity=include_entity,
            consistency=consistency if consistency is not None else self.consistency,
            trace_id=trace_id, **more,
        )
        return conv.query_response_from_proto(await self._call(self._stub.Query, request))

    async def query_batch(
        self,
        vectors: Any = None,
        *,
        texts: Optional[Sequence[str]] = None,
        fusion: Union[str, int, None] = None,
        lexical_weight: Optional[float] = None,
        k: int = 10,
        hops: Optional[int] = None,
        relations: Optional[Sequence[str]] = None,
        direction: conv.DirectionLike = "out",
        filters: Optional[Mapping[str, str]] = None,
        entity_types: Optional[Sequence[str]] = None,
        weights: Union[Weights, Mapping[str, float], None] = None,
        ef: Optional[int] = None,
        explain: bool = False,
        include_entity: bool = True,
        consistency: conv.ConsistencyLike = None,
        trace_id: Optional[str] = None,
        **more: Any,
    ) -> List[QueryResponse]:
        """See :meth:`allidb.Client.query_batch`."""
        options = conv.query_options(
            k=k, hops=hops, relations=relations, direction=direction, filters=filters,
            entity_types=entity_types, weights=weights, ef=ef, explain=explain,
            include_entity=include_entity,
            consistency=consistency if consistency is not None else self.consistency,
            trace_id=trace_id, **more,
        )
        conv.set_hybrid(options, fusion=fusion, lexical_weight=lexical_weight)
        out: List[QueryResponse] = []
        for request in conv.query_batch_requests(options, vectors, texts, k):
            reply = await self._call(self._stub.QueryBatch, request)
            out.extend(conv.query_response_from_proto(r) for r in reply.replies)
        return out

    async def traverse(
        self,
        start_ids: Union[str, Sequence[str]],
        *,
        max_hops: int = 1,
        direction: conv.DirectionLike = "out",
        relations: Optional[Sequence[str]] = None,
        min_weight: float = 0.0,
        max_nodes: Optional[int] = None,
        max_fan_out: Optional[int] = None,
        max_edges: Optional[int] = None,
        include_entity: bool = True,
        consistency: conv.ConsistencyLike = None,
        where: Optional[Any] = None,
    ) -> TraverseResult:
        """See :meth:`allidb.Client.traverse`."""
        request = conv.traverse_request(
            start_ids, max_hops=max_hops, direction=direction, relations=relations,
            min_weight=min_weight, max_nodes=max_nodes, max_fan_out=max_fan_out,
            max_edges=max_edges, include_entity=include_entity,
            consistency=consistency if consistency is not None else self.consistency,
            where=where,
        )
        return conv.traverse_from_proto(await self._call(self._stub.Traverse, request))

    @property
    def stub(self) -> rpc.AlliDBStub:
        """The generated stub on the aio channel (for RPCs the client does not wrap)."""
        return self._stub

    @property
    def metadata(self) -> Tuple[Tuple[str, str], ...]:
        """The call metadata (the API key header when one was given)."""
        return self._metadata
