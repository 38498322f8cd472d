"""The synchronous client, :class:`Client`."""

from __future__ import annotations

import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

import grpc

from . import _convert as conv
from ._channel import DEFAULT_MAX_MESSAGE_BYTES, PemLike, channel_config
from ._proto import allidb_pb2 as pb
from ._proto import allidb_pb2_grpc as rpc
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

__all__ = ["Client", "Progress"]

#: ``progress=`` of put_many: True (a bar on stderr; tqdm's when installed) or a callable
#: called with the number of entities handled so far.
Progress = Union[bool, Callable[[int], None], None]


class _ProgressReporter:
    """Reports put_many's progress: tqdm when installed, else a line on stderr."""

    def __init__(self, progress: Progress, total: Optional[int]) -> None:
        self._callback: Optional[Callable[[int], None]] = None
        self._bar: Any = None
        self._count = 0
        self._last_print = 0.0
        if callable(progress):
            self._callback = progress
        elif progress:
            try:
                from tqdm import tqdm  # type: ignore[import-not-found]

                self._bar = tqdm(total=total, unit="entities", desc="put_many")
            except ImportError:
                self._bar = None
        self._enabled = bool(progress)
        self._total = total

    def advance(self, count: int) -> None:
        if not self._enabled:
            return
        self._count += count
        if self._callback is not None:
            self._callback(self._count)
        elif self._bar is not None:
            self._bar.update(count)
        else:
            now = time.monotonic()
            if now - self._last_print >= 0.5:
                self._last_print = now
                total = f"/{self._total}" if self._total is not None else ""
                sys.stderr.write(f"\rput_many: {self._count}{total} entities")
                sys.stderr.flush()

    def close(self) -> None:
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif self._callback is None:
            total = f"/{self._total}" if self._total is not None else ""
            sys.stderr.write(f"\rput_many: {self._count}{total} entities\n")
            sys.stderr.flush()


#: Codes of a refusal of one entity (counted as a failure), not of the whole call.
_ENTITY_ERRORS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)


def _failed_ids(
    batch: Sequence[conv.EncodedEntity], written: Sequence[str]
) -> List[conv.EncodedEntity]:
    """The entities of a batch the server did not report as written (duplicates counted)."""
    left: Dict[str, int] = {}
    for entity_id in written:
        left[entity_id] = left.get(entity_id, 0) + 1
    failed = []
    for entity in batch:
        if left.get(entity.entity_id, 0) > 0:
            left[entity.entity_id] -= 1
        else:
            failed.append(entity)
    return failed


class Client:
    """A synchronous AlliDB client over one gRPC channel (thread-safe).

    >>> with allidb.Client("127.0.0.1:7000", api_key=None) as db:
    ...     db.put(allidb.Entity("paris", vector=[0.9, 0.1, 0.0]))

    Args:
        addr: ``host:port`` of the daemon's gRPC listener (``https://host:port`` turns TLS on).
        api_key: sent as ``x-allidb-api-key`` on every call; it decides the tenant and role.
        tls: connect with TLS (implied by ``tls_ca`` or ``tls_cert``); without ``tls_ca`` the
            system roots verify the server.
        tls_ca: the CA certificate(s) that signed the server's certificate: PEM bytes or a path.
        tls_cert, tls_key: a client certificate and its key for mutual TLS (PEM bytes or paths).
        tls_server_name: the name to verify on the server's certificate when ``addr`` is not
            one of its names (an IP address, a load balancer).
        timeout: seconds each call may take (None = no deadline).
        consistency: default consistency of reads and writes: ``"one"`` (default), ``"quorum"``
            or ``"all"``; each call may override it.
        max_message_bytes: largest request and reply the channel accepts.
        options: extra grpcio channel options.
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
            self._channel = grpc.insecure_channel(config.target, options=config.options)
        else:
            self._channel = grpc.secure_channel(
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

    # ---- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Closes the channel; calls after this fail."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing ----------------------------------------------------------------------

    def _call(self, method: Any, request: Any, trace_id: Optional[str] = None) -> Any:
        metadata = self._metadata
        if trace_id:
            metadata = metadata + ((conv.TRACE_ID_HEADER, trace_id),)
        try:
            return method(request, metadata=metadata, timeout=self.timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def _level(self, consistency: conv.ConsistencyLike) -> Any:
        return conv.consistency_level(consistency if consistency is not None else self.consistency)

    # ---- health ------------------------------------------------------------------------

    def health(self) -> Health:
        """The server's liveness, status and version (needs no API key)."""
        return conv.health_from_proto(self._call(self._stub.HealthCheck, pb.HealthCheckRequest()))

    def wait_ready(self, timeout: float = 30.0) -> Health:
        """Polls :meth:`health` until the server reports ``healthy``; raises
        :class:`allidb.Unavailable` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last: Optional[BaseException] = None
        while True:
            try:
                health = self.health()
                if health.healthy:
                    return health
                last = Unavailable(f"server status is {health.status!r}")
            except AlliDBError as error:
                last = error
            if time.monotonic() >= deadline:
                raise Unavailable(f"not ready after {timeout} s: {last}")
            time.sleep(0.05)

    # ---- writes ------------------------------------------------------------------------

    def put(
        self,
        entity: conv.EntityLike,
        *,
        consistency: conv.ConsistencyLike = None,
        merge: bool = False,
    ) -> str:
        """Writes (replaces) one entity and returns its id. With ``merge=True`` the entity is
        merged into the stored one instead (``WRITE_MODE_MERGE_SOURCES``: its ``source_ids``,
        chunks, edges and attributes are unioned; docs/python.md "Sources"). An entity with
        ``ttl_secs`` or ``expires_at_nanos`` expires (docs/python.md "Expiry").

        Raises :class:`allidb.InvalidArgument` naming the field for a bad entity (a vector of
        another dimension than the tenant's, an empty id, a non-finite value, a negative TTL,
        ...).
        """
        request = pb.PutEntityRequest(
            entity=conv.entity_to_proto(entity),
            consistency_level=self._level(consistency),
            mode=conv.write_mode(merge),
        )
        reply = self._call(self._stub.PutEntity, request)
        if not reply.success:
            raise AlliDBError(reply.error_message or "put failed", grpc.StatusCode.UNKNOWN)
        return reply.entity_id

    def put_many(
        self,
        entities: Iterable[conv.EntityLike],
        *,
        batch_size: int = 256,
        batch_bytes: int = 4 * 1024 * 1024,
        concurrency: int = 4,
        progress: Progress = False,
        consistency: conv.ConsistencyLike = None,
        raise_on_error: bool = True,
        merge: bool = False,
    ) -> PutManyResult:
        """Writes many entities with ``BatchPutEntities``: batches of at most ``batch_size``
        entities (and about ``batch_bytes``), ``concurrency`` batches in flight.

        ``entities`` may be any iterable (a generator is consumed lazily). An entity the server
        refuses is retried alone with ``PutEntity`` to learn its reason; with
        ``raise_on_error`` (default) the call then raises :class:`allidb.PutManyError` (after
        writing everything else) whose ``result`` lists each failure, else the failures are in
        the returned :class:`PutManyResult`. A call-level error (unauthenticated, unavailable,
        ...) stops the writes and raises. ``progress=True`` shows a progress bar on stderr
        (tqdm's when installed); a callable gets the count of entities handled so far.
        ``merge=True`` merges each entity into the stored one (see :meth:`put`).
        """
        total = len(entities) if hasattr(entities, "__len__") else None  # type: ignore[arg-type]
        level = self._level(consistency)
        result = PutManyResult()
        reporter = _ProgressReporter(progress, total)
        workers = max(1, int(concurrency))

        def send(batch: List[conv.EncodedEntity]) -> Tuple[int, List[PutFailure]]:
            request = conv.batch_put_request(batch, level, merge)
            reply = self._call(self._batch_put_bytes, request)
            failures: List[PutFailure] = []
            written = len(reply.entity_ids)
            if reply.failure_count or written < len(batch):
                for entity in _failed_ids(batch, reply.entity_ids):
                    try:
                        self.put(entity.message(), consistency=consistency, merge=merge)
                        written += 1
                    except AlliDBError as error:
                        if error.code not in _ENTITY_ERRORS:
                            raise
                        failures.append(PutFailure(entity.entity_id, error.message))
            return written, failures

        def collect(done: Iterable["Future[Tuple[int, List[PutFailure]]]"]) -> None:
            for future in done:
                written, failures = future.result()
                result.written += written
                result.failed += len(failures)
                result.failures.extend(failures)
                reporter.advance(written + len(failures))

        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                pending: Set["Future[Tuple[int, List[PutFailure]]]"] = set()
                try:
                    for batch in conv.batches(entities, batch_size, batch_bytes):
                        result.total += len(batch)
                        result.batches += 1
                        pending.add(pool.submit(send, batch))
                        if len(pending) >= workers:
                            done, pending = wait(pending, return_when=FIRST_COMPLETED)
                            collect(done)
                    done, pending = wait(pending)
                    collect(done)
                except BaseException:
                    for future in pending:
                        future.cancel()
                    raise
        finally:
            reporter.close()
        if result.failures and raise_on_error:
            raise PutManyError(result)
        return result

    def delete(self, entity_id: str, *, consistency: conv.ConsistencyLike = None) -> bool:
        """Deletes an entity; returns whether it existed."""
        request = pb.DeleteEntityRequest(entity_id=entity_id, consistency_level=self._level(consistency))
        return bool(self._call(self._stub.DeleteEntity, request).found)

    def delete_by_source(
        self, source_id: str, *, consistency: conv.ConsistencyLike = None
    ) -> SourceDeleted:
        """Removes what the source (a document) contributed: its chunks, the edges and entities
        only it supports (with their edges both ways); what other sources support too only loses
        this one. Idempotent (a second call deletes nothing)."""
        request = pb.DeleteBySourceRequest(
            source_id=source_id, consistency_level=self._level(consistency)
        )
        reply = self._call(self._stub.DeleteBySource, request)
        return SourceDeleted(deleted=reply.deleted, updated=reply.updated)

    def replace_source(
        self,
        source_id: str,
        entities: Iterable[conv.EntityLike],
        *,
        consistency: conv.ConsistencyLike = None,
    ) -> SourceDeleted:
        """Replaces what the source contributed with ``entities`` in one step (no reader sees
        neither version): each is written with exactly this source, merged into what other
        sources support. At most 1000 entities per call."""
        request = pb.ReplaceSourceRequest(
            source_id=source_id,
            entities=[conv.entity_to_proto(e) for e in entities],
            consistency_level=self._level(consistency),
        )
        reply = self._call(self._stub.ReplaceSource, request)
        return SourceDeleted(deleted=reply.deleted, updated=reply.updated, written=reply.written)

    def delete_by_filter(
        self,
        where: Any = None,
        *,
        entity_types: Optional[Sequence[str]] = None,
        dry_run: bool = False,
        max_deletes: Optional[int] = None,
        confirm: bool = False,
        consistency: conv.ConsistencyLike = None,
    ) -> DeleteByFilterResult:
        """Deletes the entities that pass ``where`` (a filter dict, as in :meth:`query`, or a
        ``FilterExpression``) and ``entity_types``: at most ``max_deletes`` (default 1000, at
        most 100000) per call (``more`` says others match: call again). ``dry_run=True`` only
        counts them. A filter that matches every entity of the tenant (an empty one always
        does) raises :class:`allidb.InvalidArgument` unless ``confirm=True``."""
        request = conv.delete_by_filter_request(
            where, entity_types, dry_run, max_deletes, confirm, self._level(consistency)
        )
        reply = self._call(self._stub.DeleteByFilter, request)
        return DeleteByFilterResult(matched=reply.matched, deleted=reply.deleted, more=reply.more)

    def add_edges(
        self,
        edges: Iterable[Union[Edge, Sequence[Any]]],
        *,
        consistency: conv.ConsistencyLike = None,
    ) -> int:
        """Adds or overwrites edges (both ends required) without rewriting their entities;
        ``(source, target, relation[, weight])`` tuples work too. Returns the edge count."""
        messages = [conv.edge_to_proto(e) for e in edges]
        count = 0
        for part in conv.chunked(messages, conv.MAX_EDGES):
            request = pb.AddEdgesRequest(edges=part, consistency_level=self._level(consistency))
            count += self._call(self._stub.AddEdges, request).edge_count
        return count

    def remove_edges(
        self,
        edges: Iterable[Union[Edge, Sequence[str]]],
        *,
        consistency: conv.ConsistencyLike = None,
    ) -> int:
        """Removes edges named by :class:`Edge` or ``(source, target, relation)``; returns the
        server's edge count."""
        keys = [conv.edge_key(e) for e in edges]
        count = 0
        for part in conv.chunked(keys, conv.MAX_EDGES):
            request = pb.RemoveEdgesRequest(edges=part, consistency_level=self._level(consistency))
            count += self._call(self._stub.RemoveEdges, request).edge_count
        return count

    # ---- reads -------------------------------------------------------------------------

    def get(self, entity_id: str, *, consistency: conv.ConsistencyLike = None) -> Optional[Entity]:
        """The entity, or None when it does not exist."""
        request = pb.GetEntityRequest(entity_id=entity_id, consistency_level=self._level(consistency))
        reply = self._call(self._stub.GetEntity, request)
        return conv.entity_from_proto(reply.entity) if reply.found else None

    def get_many(
        self, entity_ids: Iterable[str], *, consistency: conv.ConsistencyLike = None
    ) -> GetManyResult:
        """The entities found, in request order, and the ids not found (any number of ids:
        requests of 1000)."""
        ids = list(entity_ids)
        out = GetManyResult()
        for part in conv.chunked(ids, conv.MAX_GET_IDS):
            request = pb.GetEntitiesRequest(entity_ids=part, consistency_level=self._level(consistency))
            reply = self._call(self._stub.GetEntities, request)
            out.entities.extend(conv.entity_from_proto(e) for e in reply.entities)
            out.missing_ids.extend(reply.missing_ids)
        return out

    def scan_pages(
        self,
        start: Optional[str] = None,
        end: Optional[str] = None,
        *,
        page_size: int = 100,
        page_token: str = "",
        where: Optional[Any] = None,
    ) -> Iterator[ScanPage]:
        """The pages of a scan of the tenant's entities with ``start <= id < end`` (None =
        unbounded), ascending; each page holds at most ``page_size`` (server maximum 1000).
        ``where``: only entities passing this filter (a dict, see :mod:`allidb.filters`)."""
        token = page_token
        while True:
            request = conv.scan_request(start, end, page_size, token, where)
            reply = self._call(self._stub.RangeScan, request)
            yield ScanPage(
                entities=[conv.entity_from_proto(e) for e in reply.entities],
                next_page_token=reply.next_page_token,
            )
            token = reply.next_page_token
            if not token:
                return

    def scan(
        self,
        start: Optional[str] = None,
        end: Optional[str] = None,
        *,
        page_size: int = 100,
        where: Optional[Any] = None,
    ) -> Iterator[Entity]:
        """Every entity of the tenant with ``start <= id < end``, ascending, fetched page by
        page as the iterator advances."""
        for page in self.scan_pages(start, end, page_size=page_size, where=where):
            yield from page.entities

    def query(
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
        """Graph-RAG query: nearest neighbours of ``vector``, graph expansion, unified score,
        the top ``k`` (best first).

        Args:
            vector: a list, tuple or numpy array of the tenant's dimension (optional with
                ``text``: a text-only query).
            text: hybrid search: searched by BM25 over the entities' chunk texts, alone or
                fused with ``vector``; the fused candidates seed the graph expansion.
            fusion: with both ``vector`` and ``text``: ``"rrf"`` (default, rank constant 60;
                ``rank_constant`` in ``more``) or ``"dbsf"``.
            lexical_weight: with both: the lexical share of the fused relevance, in [0, 1]
                (default 0.5).
            k: results wanted (server maximum 1000).
            hops: graph expansion depth (None = the server's default, 0 = no expansion).
            relations: relations the expansion follows (None = all).
            direction: ``"out"``, ``"in"`` or ``"both"``.
            filters: attributes every result must carry with equal values.
            where (in ``more``): a filter dict in LangChain's language (``{"year": {"$gte":
                2021}}``, see :mod:`allidb.filters`), ANDed with ``filters``.
            entity_types: the entity type must be one of these.
            weights: :class:`Weights` or a dict (``{"graph": 0.5}``) of the score's terms.
            ef: HNSW search breadth (None = the server's default).
            explain: fill each result's ``components`` and ``path``.
            include_entity: return each result's entity (False: ids and scores only).
            consistency: ``"one"``, ``"quorum"`` or ``"all"``.
            trace_id: echoed in the reply and logged by the server.
            **more: the other ``QueryRequest`` options: ``expand_factor``, ``seeds``,
                ``min_weight``, ``hop_decay``, ``include_context``, ``context_chunks``,
                ``max_nodes``, ``max_edges``, ``max_fan_out``, ``max_context_bytes``,
                ``scoring`` (``"unified"``/``"pagerank"``), ``pagerank``
                (:class:`PageRankOptions` or a dict).
        """
        request = conv.query_request(
            vector, text=text, fusion=fusion, lexical_weight=lexical_weight,
            rank_constant=rank_constant, k=k, hops=hops, relations=relations,
            direction=direction, filters=filters, entity_types=entity_types, weights=weights,
            ef=ef, explain=explain, include_entity=include_entity,
            consistency=consistency if consistency is not None else self.consistency,
            trace_id=trace_id, **more,
        )
        return conv.query_response_from_proto(self._call(self._stub.Query, request))

    def query_batch(
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
        """Many queries with the same options (those of :meth:`query`) in as few round trips
        as the server's limits allow (1000 vectors per call): one :class:`QueryResponse` per
        vector, in order, each what :meth:`query` returns for it. ``vectors`` is a sequence of
        vectors or a 2-d numpy array. ``texts`` (hybrid search): one text per query, with
        ``vectors`` (as many) or alone (text-only queries); ``fusion`` and ``lexical_weight`` as
        in :meth:`query`. ``include_context`` is refused by the server."""
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
            reply = self._call(self._stub.QueryBatch, request)
            out.extend(conv.query_response_from_proto(r) for r in reply.replies)
        return out

    def traverse(
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
        """Breadth-first traversal from ``start_ids`` (one id or many) up to ``max_hops``
        (server maximum 10) along ``direction`` (``"out"``, ``"in"``, ``"both"``); each node
        has its depth and the first path that reached it. Start ids that do not exist are
        skipped."""
        request = conv.traverse_request(
            start_ids, max_hops=max_hops, direction=direction, relations=relations,
            min_weight=min_weight, max_nodes=max_nodes, max_fan_out=max_fan_out,
            max_edges=max_edges, include_entity=include_entity,
            consistency=consistency if consistency is not None else self.consistency,
            where=where,
        )
        return conv.traverse_from_proto(self._call(self._stub.Traverse, request))

    @property
    def stub(self) -> rpc.AlliDBStub:
        """The generated grpcio stub, for RPCs the client does not wrap (Checkpoint, ...);
        pass ``metadata=client.metadata``."""
        return self._stub

    @property
    def metadata(self) -> Tuple[Tuple[str, str], ...]:
        """The call metadata (the API key header when one was given)."""
        return self._metadata

