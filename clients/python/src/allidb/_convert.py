"""Conversions between the package's dataclasses and the generated protobuf messages, and the
request builders shared by :class:`allidb.Client` and :class:`allidb.AsyncClient`."""

from __future__ import annotations

import math
import os
import struct
import sys
from array import array
from dataclasses import asdict
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import filters as filter_lang
from ._proto import allidb_pb2 as pb
from .errors import Unknown
from .types import (
    Chunk,
    ContextNode,
    Deferred,
    Edge,
    Embedding,
    Entity,
    FilterPlan,
    Health,
    PageRank,
    PageRankOptions,
    Path,
    QueryContext,
    QueryResponse,
    QueryResult,
    ScoreComponents,
    LexicalMatch,
    TraversedNode,
    TraverseResult,
    Weights,
)

API_KEY_HEADER = "x-allidb-api-key"
TRACE_ID_HEADER = "x-trace-id"

#: Server limits the clients split requests by (docs/api.md).
MAX_BATCH_ENTITIES = 1000
MAX_GET_IDS = 1000
MAX_EDGES = 10_000
MAX_QUERY_BATCH_VECTORS = 1000
MAX_QUERY_BATCH_VALUES = 2_097_152
MAX_QUERY_BATCH_RESULTS = 100_000

ConsistencyLike = Union[str, int, None]
DirectionLike = Union[str, int]

_CONSISTENCY = {"one": pb.CONSISTENCY_ONE, "quorum": pb.CONSISTENCY_QUORUM, "all": pb.CONSISTENCY_ALL}
_DIRECTION = {"out": pb.DIRECTION_OUT, "in": pb.DIRECTION_IN, "both": pb.DIRECTION_BOTH}
_SCORING = {
    "unified": pb.SCORING_UNIFIED,
    "pagerank": pb.SCORING_PERSONALIZED_PAGERANK,
    "personalized_pagerank": pb.SCORING_PERSONALIZED_PAGERANK,
}


def consistency_level(value: ConsistencyLike) -> Any:
    """``"one"``, ``"quorum"``, ``"all"`` (or the enum number) -> the protobuf enum; None -> ONE."""
    if value is None:
        return pb.CONSISTENCY_ONE
    if isinstance(value, str):
        try:
            return _CONSISTENCY[value.lower()]
        except KeyError:
            raise ValueError(f"consistency must be one of one, quorum, all; got {value!r}") from None
    return int(value)


def direction_enum(value: DirectionLike) -> Any:
    """``"out"``, ``"in"``, ``"both"`` (or the enum number) -> the protobuf enum."""
    if isinstance(value, str):
        try:
            return _DIRECTION[value.lower()]
        except KeyError:
            raise ValueError(f"direction must be one of out, in, both; got {value!r}") from None
    return int(value)


def scoring_mode(value: Union[str, int]) -> Any:
    """``"unified"`` or ``"pagerank"`` (or the enum number) -> the protobuf enum."""
    if isinstance(value, str):
        try:
            return _SCORING[value.lower()]
        except KeyError:
            raise ValueError(f"scoring must be 'unified' or 'pagerank'; got {value!r}") from None
    return int(value)


_FUSION = {"rrf": 1, "dbsf": 2}


def fusion_mode(value: Union[str, int]) -> int:
    """``"rrf"`` or ``"dbsf"`` (or the enum number) -> the protobuf enum."""
    if isinstance(value, str):
        try:
            return _FUSION[value.lower()]
        except KeyError:
            raise ValueError(f"fusion must be 'rrf' or 'dbsf'; got {value!r}") from None
    return int(value)


def set_hybrid(
    request: Any,
    *,
    text: Optional[str] = None,
    fusion: Union[str, int, None] = None,
    lexical_weight: Optional[float] = None,
    rank_constant: Optional[int] = None,
) -> None:
    """Sets a ``QueryRequest``'s hybrid-search fields (the server checks them)."""
    if text is not None:
        request.text = str(text)
    if fusion is not None:
        request.fusion = fusion_mode(fusion)
    if lexical_weight is not None:
        request.lexical_weight = float(lexical_weight)
    if rank_constant is not None:
        request.rank_constant = int(rank_constant)


def floats(vector: Any, name: str = "vector") -> List[float]:
    """A flat list of floats from a list, tuple or 1-d numpy array."""
    if hasattr(vector, "tolist"):
        vector = vector.tolist()
    values = list(vector)
    if values and isinstance(values[0], (list, tuple)):
        raise ValueError(f"{name} must be one-dimensional")
    return values


def vectors(matrix: Any) -> List[List[float]]:
    """A list of vectors from a sequence of vectors or a 2-d numpy array."""
    if hasattr(matrix, "tolist"):
        matrix = matrix.tolist()
    out = [floats(row, f"vectors[{i}]") for i, row in enumerate(matrix)]
    return out


# ---- query vectors -----------------------------------------------------------------------
#
# A query vector is sent as a packed ``repeated float`` merged into the request from bytes
# (see "entity encoding" below): a 1-d numpy array goes through ``astype('<f4').tobytes()``
# and a list through ``array('f', ...)``, with no Python float per element and no protobuf
# per-element append. Anything else takes ``floats()`` and ``extend`` (protobuf's errors).


def set_query_vector(request: pb.QueryRequest, vector: Any) -> None:
    """Sets ``request.query_vector`` (empty before) to ``vector``."""
    data = _f32_bytes(vector)
    if data is None:
        request.query_vector.extend(floats(vector))
    elif data:
        # QueryRequest.query_vector is field 1.
        request.MergeFromString(b"\x0a" + _varint(len(data)) + data)


def query_request(
    vector: Any,
    *,
    text: Optional[str] = None,
    fusion: Union[str, int, None] = None,
    lexical_weight: Optional[float] = None,
    rank_constant: Optional[int] = None,
    **options: Any,
) -> pb.QueryRequest:
    """The ``QueryRequest`` of :meth:`allidb.Client.query` (``options``: those of
    :func:`query_options`)."""
    request = query_options(**options)
    if vector is None and text is None:
        raise ValueError("query needs a vector, a text, or both")
    if vector is not None:
        set_query_vector(request, vector)
    set_hybrid(
        request, text=text, fusion=fusion, lexical_weight=lexical_weight,
        rank_constant=rank_constant,
    )
    return request


def _query_vector_bytes(row: Any, index: int) -> Tuple[bytes, int]:
    """A serialized ``QueryVector`` of one row and its number of values."""
    data = _f32_bytes(row)
    if data is None:
        values = floats(row, f"vectors[{index}]")
        return pb.QueryVector(values=values).SerializeToString(), len(values)
    # QueryVector.values is field 1.
    return (b"\x0a" + _varint(len(data)) + data if data else b""), len(data) // 4


def query_vectors(matrix: Any) -> List[Tuple[bytes, int]]:
    """Each vector of a sequence of vectors or a 2-d numpy array as a serialized
    ``QueryVector`` and its number of values."""
    if getattr(matrix, "ndim", None) == 2 and getattr(getattr(matrix, "dtype", None), "kind", "") in "fiu":
        try:
            matrix = matrix.astype("<f4", copy=False)
        except Exception:  # not numpy after all
            pass
    return [_query_vector_bytes(row, i) for i, row in enumerate(matrix)]


def query_batch_requests(
    options: pb.QueryRequest, vectors: Any, texts: Optional[Sequence[str]], k: int
) -> List[pb.QueryBatchRequest]:
    """The ``QueryBatchRequest`` calls of :meth:`allidb.Client.query_batch`, each within the
    server's limits, in order (one empty request when there are neither vectors nor texts: the
    server then says what it says about an empty batch)."""
    encoded = query_vectors(vectors) if vectors is not None else []
    all_texts = [str(t) for t in texts] if texts is not None else []
    if all_texts and encoded and len(all_texts) != len(encoded):
        raise ValueError(
            f"texts has {len(all_texts)} entries and vectors {len(encoded)}: give one "
            "text per vector, or no vectors"
        )
    requests = []
    for _, part, part_texts in query_batch_parts(encoded, all_texts, k, size=_second):
        request = pb.QueryBatchRequest(options=options)
        if part:
            # QueryBatchRequest.vectors is field 2.
            request.MergeFromString(
                b"".join(b"\x12" + _varint(len(data)) + data for data, _ in part)
            )
        request.texts.extend(part_texts)
        requests.append(request)
    if not encoded and not all_texts:
        requests.append(pb.QueryBatchRequest(options=options))
    return requests


def _second(item: Tuple[Any, int]) -> int:
    return item[1]


# ---- to protobuf -------------------------------------------------------------------------


def edge_to_proto(edge: Union[Edge, Sequence[Any]]) -> pb.GraphEdge:
    """An :class:`Edge` (or a ``(source, target, relation[, weight])`` tuple) -> GraphEdge."""
    if not isinstance(edge, Edge):
        edge = Edge(*edge)
    return pb.GraphEdge(
        from_entity=edge.source,
        to_entity=edge.target,
        relation=edge.relation,
        weight=float(edge.weight),
        timestamp_nanos=int(edge.timestamp_nanos),
        source_ids=list(edge.source_ids),
    )


def edge_key(edge: Union[Edge, Sequence[str]]) -> pb.EdgeKey:
    """An :class:`Edge` or a ``(source, target, relation)`` tuple -> EdgeKey."""
    if isinstance(edge, Edge):
        return pb.EdgeKey(from_entity=edge.source, to_entity=edge.target, relation=edge.relation)
    source, target, relation = edge[0], edge[1], edge[2]
    return pb.EdgeKey(from_entity=source, to_entity=target, relation=relation)


EntityLike = Union[Entity, Mapping[str, Any], "pb.Entity"]


# ---- entity encoding ---------------------------------------------------------------------
#
# Converting a vector to Python floats and setting them on a protobuf field one by one costs
# about 30 us for 384 values; a packed ``repeated float`` is on the wire just a tag, a varint
# length and the little-endian float32 values, so the common entity (id, type, tenant,
# importance, embeddings) is encoded to bytes here and parsed once. Anything else (attributes,
# chunks, edges) is then set on the parsed message. Anything unusual (a non-str id, a vector
# that is neither a 1-d numeric array nor a list of numbers, ...) takes the field-by-field path,
# which raises protobuf's own errors.

_LITTLE_ENDIAN = sys.byteorder == "little"
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_pack_double = struct.Struct("<d").pack


def _varint(value: int) -> bytes:
    """Protobuf varint of a non-negative int below 2**64."""
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _f32_bytes(vector: Any) -> Optional[bytes]:
    """Little-endian float32 bytes of a 1-d numeric numpy array or a list/tuple of numbers;
    None for anything else."""
    if isinstance(vector, (list, tuple)):
        try:
            values = array("f", vector)
        except (TypeError, ValueError, OverflowError):
            return None
        if not _LITTLE_ENDIAN:
            values.byteswap()
        return values.tobytes()
    dtype = getattr(vector, "dtype", None)
    if dtype is not None and getattr(vector, "ndim", None) == 1 and getattr(dtype, "kind", "") in "fiu":
        try:
            return vector.astype("<f4", copy=False).tobytes()
        except Exception:  # not numpy after all
            return None
    return None


def _int64_varint(value: Any) -> Optional[bytes]:
    if isinstance(value, bool) or not isinstance(value, int) or not _INT64_MIN <= value <= _INT64_MAX:
        return None
    return _varint(value & 0xFFFFFFFFFFFFFFFF)


def _embedding_bytes(vector: Any, version: Any = 0, timestamp_nanos: Any = 0) -> Optional[bytes]:
    """A serialized VectorEmbedding, or None when the fast encoding does not apply."""
    data = _f32_bytes(vector)
    if data is None:
        return None
    parts = []
    if version:
        encoded = _int64_varint(version)
        if encoded is None:
            return None
        parts.append(b"\x08" + encoded)
    if data:
        parts.append(b"\x12" + _varint(len(data)) + data)
    if timestamp_nanos:
        encoded = _int64_varint(timestamp_nanos)
        if encoded is None:
            return None
        parts.append(b"\x18" + encoded)
    return b"".join(parts)


def _string_field(tag: bytes, value: Any) -> Optional[bytes]:
    if type(value) is not str:
        return None
    if not value:
        return b""
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return tag + _varint(len(data)) + data


def _entity_bytes(entity: Entity) -> Optional[bytes]:
    """The id, tenant, type, embeddings and importance of an entity as a serialized protobuf
    ``Entity``, or None when the fast encoding does not apply."""
    if entity.embeddings:
        if entity.vector is not None:
            return None  # the field-by-field path checks they agree
        embeddings = []
        for emb in entity.embeddings:
            if not isinstance(emb, Embedding):
                return None
            encoded = _embedding_bytes(emb.vector, emb.version, emb.timestamp_nanos)
            if encoded is None:
                return None
            embeddings.append(encoded)
    elif entity.vector is not None:
        encoded = _embedding_bytes(entity.vector)
        if encoded is None:
            return None
        embeddings = [encoded]
    else:
        embeddings = []
    entity_id = _string_field(b"\x0a", entity.id)
    tenant = _string_field(b"\x12", entity.tenant_id)
    entity_type = _string_field(b"\x1a", entity.type)
    if entity_id is None or tenant is None or entity_type is None:
        return None
    parts = [entity_id, tenant, entity_type]
    for encoded in embeddings:
        parts.append(b"\x22" + _varint(len(encoded)) + encoded)
    importance = entity.importance
    if type(importance) is not float:
        try:
            importance = float(importance)
        except (TypeError, ValueError):
            return None
    if importance != 0.0 or math.copysign(1.0, importance) < 0:
        parts.append(b"\x41" + _pack_double(importance))
    return b"".join(parts)


def entity_to_proto(entity: EntityLike) -> pb.Entity:
    """An :class:`Entity`, a mapping of its fields, or a protobuf ``Entity`` -> protobuf."""
    if isinstance(entity, pb.Entity):
        return entity
    if isinstance(entity, Mapping):
        entity = Entity(**entity)
    encoded = _entity_bytes(entity)
    return _with_rest(entity, pb.Entity.FromString(encoded) if encoded is not None else None)


def _has_rest(entity: Entity) -> bool:
    return bool(
        entity.attributes
        or entity.typed_attributes
        or entity.chunks
        or entity.edges
        or entity.incoming_edges
        or entity.source_ids
        or entity.expires_at_nanos
        or entity.ttl_secs
    )


def _with_rest(entity: Entity, message: Optional[pb.Entity]) -> pb.Entity:
    """``message`` (or the entity's fields set one by one) with its attributes, chunks, edges."""
    if message is None:
        message = _entity_fields(entity)
    if entity.attributes:
        message.attributes.update({str(k): str(v) for k, v in entity.attributes.items()})
    for key, value in (entity.typed_attributes or {}).items():
        message.typed_attributes[str(key)].CopyFrom(
            filter_lang.attribute_value(value, f"typed_attributes[{key!r}]")
        )
    for chunk in entity.chunks:
        message.chunks.add(
            chunk_id=chunk.id,
            text=chunk.text,
            metadata=dict(chunk.metadata),
            source_ids=list(chunk.source_ids),
        )
    message.source_ids.extend(entity.source_ids)
    message.expires_at_nanos = int(entity.expires_at_nanos)
    message.ttl_secs = int(entity.ttl_secs)
    for edge in entity.edges:
        message.outgoing_edges.append(edge_to_proto(edge))
    for edge in entity.incoming_edges:
        message.incoming_edges.append(edge_to_proto(edge))
    return message


class EncodedEntity:
    """An entity ready to send in a batch: its id and its serialized protobuf ``Entity``."""

    __slots__ = ("entity_id", "data")

    def __init__(self, entity_id: str, data: bytes) -> None:
        self.entity_id = entity_id
        self.data = data

    def message(self) -> pb.Entity:
        return pb.Entity.FromString(self.data)


def encode_entity(entity: EntityLike) -> EncodedEntity:
    """An :class:`Entity`, a mapping of its fields, or a protobuf ``Entity`` -> its bytes."""
    if isinstance(entity, pb.Entity):
        return EncodedEntity(entity.entity_id, entity.SerializeToString())
    if isinstance(entity, Mapping):
        entity = Entity(**entity)
    encoded = _entity_bytes(entity)
    if encoded is not None and not _has_rest(entity):
        return EncodedEntity(entity.id, encoded)
    message = _with_rest(entity, pb.Entity.FromString(encoded) if encoded is not None else None)
    return EncodedEntity(message.entity_id, message.SerializeToString())


def batch_put_request(batch: Sequence[EncodedEntity], level: Any, merge: bool = False) -> bytes:
    """A serialized ``BatchPutEntitiesRequest`` of encoded entities at consistency ``level``
    (``merge``: ``WRITE_MODE_MERGE_SOURCES``)."""
    parts = []
    for item in batch:
        parts.append(b"\x0a" + _varint(len(item.data)))
        parts.append(item.data)
    level = int(level)
    if level:
        parts.append(b"\x10" + _varint(level & 0xFFFFFFFFFFFFFFFF))
    if merge:
        parts.append(b"\x20" + _varint(pb.WRITE_MODE_MERGE_SOURCES))
    return b"".join(parts)


def delete_by_filter_request(
    where: Any,
    entity_types: Optional[Sequence[str]],
    dry_run: bool,
    max_deletes: Optional[int],
    confirm: bool,
    level: Any,
) -> pb.DeleteByFilterRequest:
    """A ``DeleteByFilterRequest`` (``where``: a filter dict or a ``FilterExpression``)."""
    request = pb.DeleteByFilterRequest(
        dry_run=bool(dry_run),
        max_deletes=int(max_deletes or 0),
        confirm=bool(confirm),
        consistency_level=level,
    )
    if where:
        request.where.CopyFrom(filter_lang.where(where))
    if entity_types:
        request.filter.entity_types.extend(entity_types)
    return request


def write_mode(merge: bool) -> int:
    """The ``WriteMode`` of a put: merge the support of sources, or replace (the default)."""
    return pb.WRITE_MODE_MERGE_SOURCES if merge else pb.WRITE_MODE_REPLACE


def _entity_fields(entity: Entity) -> pb.Entity:
    """The id, tenant, type, importance and embeddings of an entity set field by field."""
    message = pb.Entity(
        entity_id=entity.id,
        tenant_id=entity.tenant_id,
        entity_type=entity.type,
        importance=float(entity.importance),
    )
    if entity.embeddings:
        if entity.vector is not None:
            latest = max(entity.embeddings, key=lambda e: e.version).vector
            if floats(entity.vector) != [float(x) for x in floats(latest)]:
                raise ValueError(
                    f"entity {entity.id!r}: set either vector or embeddings, not both"
                )
        for emb in entity.embeddings:
            message.embeddings.add(
                version=int(emb.version),
                vector=floats(emb.vector),
                timestamp_nanos=int(emb.timestamp_nanos),
            )
    elif entity.vector is not None:
        message.embeddings.add(vector=floats(entity.vector))
    return message


def _set_weights(target: pb.ScoringWeights, weights: Union[Weights, Mapping[str, float]]) -> None:
    values = asdict(weights) if isinstance(weights, Weights) else dict(weights)
    for name, value in values.items():
        if name not in ("vector", "graph", "importance", "recency"):
            raise ValueError(f"unknown weight {name!r} (vector, graph, importance, recency)")
        if value is not None:
            setattr(target, name, float(value))


def _set_pagerank(
    target: pb.PageRankOptions, options: Union[PageRankOptions, Mapping[str, Any]]
) -> None:
    values = asdict(options) if isinstance(options, PageRankOptions) else dict(options)
    for name, value in values.items():
        if name not in ("damping", "max_iterations", "tolerance", "similarity_weight"):
            raise ValueError(f"unknown pagerank option {name!r}")
        if value is not None:
            setattr(target, name, value)


def query_options(
    *,
    k: int = 10,
    hops: Optional[int] = None,
    relations: Optional[Sequence[str]] = None,
    direction: DirectionLike = "out",
    filters: Optional[Mapping[str, str]] = None,
    entity_types: Optional[Sequence[str]] = None,
    weights: Union[Weights, Mapping[str, float], None] = None,
    ef: Optional[int] = None,
    explain: bool = False,
    where: Optional[Any] = None,
    include_entity: bool = True,
    expand_factor: Optional[int] = None,
    seeds: Optional[int] = None,
    min_weight: Optional[float] = None,
    hop_decay: Optional[float] = None,
    include_context: bool = False,
    context_chunks: bool = False,
    max_nodes: Optional[int] = None,
    max_edges: Optional[int] = None,
    max_fan_out: Optional[int] = None,
    max_context_bytes: Optional[int] = None,
    scoring: Union[str, int] = "unified",
    pagerank: Union[PageRankOptions, Mapping[str, Any], None] = None,
    consistency: ConsistencyLike = None,
    trace_id: Optional[str] = None,
) -> pb.QueryRequest:
    """The options of a query as a ``QueryRequest`` without its vector (see Client.query)."""
    request = pb.QueryRequest(
        k=int(k),
        direction=direction_enum(direction),
        explain=bool(explain),
        consistency_level=consistency_level(consistency),
        scoring=scoring_mode(scoring),
    )
    if hops is not None:
        request.max_hops = int(hops)
    if relations:
        request.relations.extend(relations)
    if filters:
        request.filter.attributes.update({str(k2): str(v) for k2, v in filters.items()})
    if where is not None:
        request.where.CopyFrom(filter_lang.where(where))
    if entity_types:
        request.filter.entity_types.extend(entity_types)
    if weights is not None:
        request.weights.SetInParent()
        _set_weights(request.weights, weights)
    if ef is not None:
        request.ef = int(ef)
    if not include_entity:
        request.include_entity = False
    if expand_factor is not None:
        request.expand_factor = int(expand_factor)
    if seeds is not None:
        request.seeds = int(seeds)
    if min_weight is not None:
        request.min_weight = float(min_weight)
    if hop_decay is not None:
        request.hop_decay = float(hop_decay)
    if include_context:
        request.include_context = True
    if context_chunks:
        request.context_chunks = True
    if max_nodes is not None:
        request.max_nodes = int(max_nodes)
    if max_edges is not None:
        request.max_edges = int(max_edges)
    if max_fan_out is not None:
        request.max_fan_out = int(max_fan_out)
    if max_context_bytes is not None:
        request.max_context_bytes = int(max_context_bytes)
    if pagerank is not None:
        request.pagerank.SetInParent()
        _set_pagerank(request.pagerank, pagerank)
    if trace_id:
        request.trace_id = trace_id
    return request


def query_batch_chunks(
    all_vectors: List[Any], k: int, size: Callable[[Any], int] = len
) -> Iterator[Tuple[int, List[Any]]]:
    """Splits query vectors into consecutive chunks within the server's QueryBatch limits
    (``size``: the number of values of an item); yields ``(offset, chunk)``."""
    per_result = int(k) if k > 0 else 10
    max_by_results = max(MAX_QUERY_BATCH_RESULTS // per_result, 1)
    limit = min(MAX_QUERY_BATCH_VECTORS, max_by_results)
    start = 0
    while start < len(all_vectors):
        end = start
        values = 0
        while end < len(all_vectors) and end - start < limit:
            count = size(all_vectors[end])
            if end > start and values + count > MAX_QUERY_BATCH_VALUES:
                break
            values += count
            end += 1
        yield start, all_vectors[start:end]
        start = end


def query_batch_parts(
    all_vectors: List[Any], all_texts: List[str], k: int, size: Callable[[Any], int] = len
) -> Iterator[Tuple[int, List[Any], List[str]]]:
    """:func:`query_batch_chunks` over vectors with their texts (as many, or none), or over
    texts alone; yields ``(offset, vectors, texts)``."""
    if all_vectors:
        for offset, chunk in query_batch_chunks(all_vectors, k, size):
            yield offset, chunk, all_texts[offset:offset + len(chunk)]
        return
    per_result = int(k) if k > 0 else 10
    limit = min(MAX_QUERY_BATCH_VECTORS, max(MAX_QUERY_BATCH_RESULTS // per_result, 1))
    for start in range(0, len(all_texts), limit):
        yield start, [], all_texts[start:start + limit]


def traverse_request(
    start_ids: Union[str, Sequence[str]],
    *,
    max_hops: int = 1,
    direction: DirectionLike = "out",
    relations: Optional[Sequence[str]] = None,
    min_weight: float = 0.0,
    max_nodes: Optional[int] = None,
    max_fan_out: Optional[int] = None,
    max_edges: Optional[int] = None,
    include_entity: bool = True,
    consistency: ConsistencyLike = None,
    where: Optional[Any] = None,
) -> pb.TraverseRequest:
    """A ``TraverseRequest`` (see Client.traverse)."""
    ids = [start_ids] if isinstance(start_ids, str) else list(start_ids)
    request = pb.TraverseRequest(
        start_ids=ids,
        max_hops=int(max_hops),
        direction=direction_enum(direction),
        relations=list(relations or []),
        min_weight=float(min_weight),
        max_nodes=int(max_nodes or 0),
        consistency_level=consistency_level(consistency),
    )
    if not include_entity:
        request.include_entity = False
    if max_fan_out is not None:
        request.max_fan_out = int(max_fan_out)
    if max_edges is not None:
        request.max_edges = int(max_edges)
    if where is not None:
        request.where.CopyFrom(filter_lang.where(where))
    return request


def scan_request(
    start: Optional[str], end: Optional[str], page_size: int, token: str, where: Optional[Any]
) -> pb.RangeScanRequest:
    """A ``RangeScanRequest`` (see Client.scan_pages)."""
    request = pb.RangeScanRequest(
        start_key=start or "", end_key=end or "", limit=int(page_size), page_token=token
    )
    if where is not None:
        request.where.CopyFrom(filter_lang.where(where))
    return request


def chunked(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batches(
    entities: Iterable[EntityLike], batch_size: int, batch_bytes: int
) -> Iterator[List[EncodedEntity]]:
    """Groups encoded entities into batches of at most ``batch_size`` entities and about
    ``batch_bytes`` encoded bytes (never more than the server's 1000 per request)."""
    size = max(1, min(int(batch_size), MAX_BATCH_ENTITIES))
    batch: List[EncodedEntity] = []
    used = 0
    for entity in entities:
        item = encode_entity(entity)
        used += len(item.data)
        batch.append(item)
        if len(batch) >= size or used >= batch_bytes:
            yield batch
            batch = []
            used = 0
    if batch:
        yield batch


def read_pem(value: Union[str, bytes, "os.PathLike[str]", None]) -> Optional[bytes]:
    """PEM bytes as given, or the contents of the file a str/path names."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    with open(value, "rb") as handle:
        return handle.read()


# ---- from protobuf -----------------------------------------------------------------------


def edge_from_proto(edge: pb.GraphEdge) -> Edge:
    return Edge(
        source=edge.from_entity,
        target=edge.to_entity,
        relation=edge.relation,
        weight=edge.weight,
        timestamp_nanos=edge.timestamp_nanos,
        source_ids=list(edge.source_ids),
    )


def chunk_from_proto(chunk: pb.TextChunk) -> Chunk:
    return Chunk(
        id=chunk.chunk_id,
        text=chunk.text,
        metadata=dict(chunk.metadata),
        source_ids=list(chunk.source_ids),
    )


def _embeddings_of(message: pb.Entity) -> List[Embedding]:
    # Slicing a repeated float field is the fastest way to a list of Python floats.
    return [
        Embedding(vector=e.vector[:], version=e.version, timestamp_nanos=e.timestamp_nanos)
        for e in message.embeddings
    ]


def _best_embedding(message: pb.Entity) -> Any:
    """The highest-version embedding (the last one of equal versions), or None."""
    best = None
    for emb in message.embeddings:
        if best is None or emb.version >= best.version:
            best = emb
    return best


def _vector_of(message: pb.Entity) -> Optional[List[float]]:
    """The vector of the highest-version embedding (the last one of equal versions)."""
    best = _best_embedding(message)
    return None if best is None else best.vector[:]


def _packed_field(data: bytes, number: int) -> Tuple[int, int]:
    """``(offset, length)`` of the last length-delimited field ``number`` of a serialized
    message (``(0, 0)`` when absent)."""
    found = (0, 0)
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if key >> 3 == number:
                found = (pos, length)
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise Unknown(f"unexpected wire type {wire} in a reply")
    return found


def _read_varint(data: bytes, pos: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _vector_bytes(message: pb.Entity) -> Optional[bytes]:
    """The little-endian float32 bytes of :func:`_vector_of` (from the serialized embedding:
    its packed ``vector``, field 2), or None without an embedding."""
    best = _best_embedding(message)
    if best is None:
        return None
    data = best.SerializeToString()
    offset, length = _packed_field(data, 2)
    return data[offset : offset + length]


def _vector_array_of(message: pb.Entity, np: Any) -> Any:
    """:func:`_vector_of` as a float32 numpy array, from the reply's bytes (no Python floats)."""
    data = _vector_bytes(message)
    return None if data is None else np.frombuffer(data, dtype="<f4").astype(np.float32)


def _results_array(results: Any, np: Any) -> Any:
    """The vectors of a reply's results' entities as one 2-d float32 array, from the reply's
    bytes (see QueryResponse.vectors_array)."""
    rows = []
    for result in results:
        data = _vector_bytes(result.entity) if result.HasField("entity") else None
        if data is None:
            what = "no vector" if result.HasField("entity") else "no entity (include_entity=False?)"
            raise ValueError(f"result {result.entity_id!r} has {what}")
        if rows and len(data) != len(rows[0]):
            raise ValueError(
                f"result {result.entity_id!r} has a vector of {len(data) // 4} values, the "
                f"first result one of {len(rows[0]) // 4}"
            )
        rows.append(data)
    if not rows:
        return np.empty((0, 0), dtype=np.float32)
    return np.frombuffer(b"".join(rows), dtype="<f4").reshape(len(rows), -1).astype(np.float32)


def _edges_of(edges: Any) -> List[Edge]:
    return [edge_from_proto(e) for e in edges]


def entity_from_proto(message: pb.Entity) -> Entity:
    """An entity of a reply. Its vectors and edges are converted when first read (the
    fields hold :class:`allidb.types.Deferred` until then; see allidb.types), so a query
    whose entities' vectors are never read does not pay for turning them into floats;
    :meth:`Entity.vector_array` reads the vector as numpy straight from the reply."""
    return Entity(
        id=message.entity_id,
        vector=(  # type: ignore[arg-type]
            Deferred(_vector_of, message, _vector_array_of) if message.embeddings else None
        ),
        type=message.entity_type,
        attributes=dict(message.attributes),
        chunks=[chunk_from_proto(c) for c in message.chunks],
        edges=Deferred(_edges_of, message.outgoing_edges),  # type: ignore[arg-type]
        importance=message.importance,
        embeddings=Deferred(_embeddings_of, message),  # type: ignore[arg-type]
        incoming_edges=Deferred(_edges_of, message.incoming_edges),  # type: ignore[arg-type]
        tenant_id=message.tenant_id,
        created_at_nanos=message.created_at_nanos,
        updated_at_nanos=message.updated_at_nanos,
        typed_attributes={
            key: filter_lang.from_attribute_value(value)
            for key, value in message.typed_attributes.items()
        },
        source_ids=list(message.source_ids),
        expires_at_nanos=message.expires_at_nanos,
    )


def path_from_proto(path: pb.GraphPath) -> Path:
    return Path(entity_ids=list(path.entity_ids), edges=[edge_from_proto(e) for e in path.edges])


# ---- query replies (lazy; see allidb.types) ------------------------------------------------


def _components_of(explanation: pb.QueryExplanation) -> ScoreComponents:
    return ScoreComponents(
        vector=explanation.vector_score,
        graph=explanation.graph_score,
        importance=explanation.importance_score,
        recency=explanation.recency_score,
        lexical=explanation.lexical_score,
    )


def _lexical_of(explanation: pb.QueryExplanation) -> Optional[LexicalMatch]:
    if not explanation.HasField("lexical"):
        return None
    return LexicalMatch(
        bm25=explanation.lexical.bm25,
        terms={t.term: t.score for t in explanation.lexical.matched_terms},
    )


def _explained_path(explanation: pb.QueryExplanation) -> Path:
    return path_from_proto(explanation.path)


def _pagerank_of(explanation: pb.QueryExplanation) -> Optional[PageRank]:
    if not explanation.HasField("pagerank"):
        return None
    return PageRank(
        mass=explanation.pagerank.mass,
        iterations=explanation.pagerank.iterations,
        seed_shares={s.entity_id: s.share for s in explanation.pagerank.seed_shares},
    )


def result_from_proto(result: pb.QueryResult) -> QueryResult:
    """A query result: id and score now; its entity and explanation when first read."""
    out = QueryResult(id=result.entity_id, score=result.score)
    if result.HasField("entity"):
        out.entity = Deferred(entity_from_proto, result.entity)  # type: ignore[assignment]
    if result.HasField("explanation"):
        explanation = result.explanation
        out.components = Deferred(_components_of, explanation)  # type: ignore[assignment]
        out.lexical = Deferred(_lexical_of, explanation)  # type: ignore[assignment]
        out.path = Deferred(_explained_path, explanation)  # type: ignore[assignment]
        out.pagerank = Deferred(_pagerank_of, explanation)  # type: ignore[assignment]
    return out


def _results_of(results: Any) -> List[QueryResult]:
    return [result_from_proto(r) for r in results]


def query_response_from_proto(response: pb.QueryResponse) -> QueryResponse:
    """A query reply: ``ids``, ``scores`` and ``len()`` read the reply as it is; ``results``,
    ``context`` and ``filter_plan`` are converted when first read (see allidb.types)."""
    out = QueryResponse(
        results=Deferred(_results_of, response.results, _results_array),  # type: ignore[arg-type]
        trace_id=response.trace_id,
        total_results=response.total_results,
    )
    if response.HasField("context"):
        out.context = Deferred(_context_of, response.context)  # type: ignore[assignment]
    if response.HasField("filter_plan"):
        out.filter_plan = Deferred(_filter_plan_of, response.filter_plan)  # type: ignore[assignment]
    return out


def _filter_plan_of(plan: pb.FilterPlan) -> FilterPlan:
    return FilterPlan(
        plan=plan.plan,
        entities=plan.entities,
        estimated_matches=plan.estimated_matches,
        estimated_selectivity=plan.estimated_selectivity,
        matched=plan.matched,
        real_selectivity=plan.real_selectivity,
    )


def context_path(nodes: List[ContextNode], node: pb.ContextNode) -> Path:
    """A context node's full path: its parent's path plus its ``step`` when the reply gives a
    step (the parent is listed, always earlier), else its whole ``path``, else (a seed) itself."""
    if node.HasField("step"):
        step = node.step
        if step.parent >= len(nodes):
            raise Unknown(
                f"context node {node.entity_id!r} has a step from node {step.parent}, "
                "which is not listed before it"
            )
        parent = nodes[step.parent]
        source, target = (node.entity_id, parent.id) if step.reversed else (parent.id, node.entity_id)
        edge = Edge(source=source, target=target, relation=step.relation, weight=step.weight)
        return Path(
            entity_ids=[*parent.path.entity_ids, node.entity_id],
            edges=[*parent.path.edges, edge],
        )
    if node.HasField("path"):
        return path_from_proto(node.path)
    return Path(entity_ids=[node.entity_id])


def _node_path(arg: Tuple[Any, Dict[int, Any], int]) -> Path:
    """The path of context node ``index`` (see :func:`context_path`), from the reply alone:
    its parent's path (kept in ``cache``, shared by the context's nodes, so each step is
    converted once) plus its step, else its whole ``path``, else itself. The nodes hold no
    references to each other. A step from a node not listed before it raises."""
    nodes, cache, index = arg
    _, ids, edges = _path_parts(nodes, cache, index)
    return Path(entity_ids=list(ids), edges=list(edges))


def _path_parts(nodes: Any, cache: Dict[int, Any], index: int) -> Tuple[str, Tuple[str, ...], Tuple[Edge, ...]]:
    """``(entity id, path ids, path edges)`` of context node ``index``, cached."""
    parts = cache.get(index)
    if parts is not None:
        return parts
    # Up the steps to a node whose parts are known or that has no step, then down again.
    chain = []
    while True:
        node = nodes[index]
        if not node.HasField("step"):
            entity_id = node.entity_id
            if node.HasField("path"):
                path = path_from_proto(node.path)
                parts = (entity_id, tuple(path.entity_ids), tuple(path.edges))
            else:
                parts = (entity_id, (entity_id,), ())
            cache[index] = parts
            break
        parent = node.step.parent
        if parent >= index:
            raise _unlisted_parent(node)
        chain.append((index, node))
        index = parent
        parts = cache.get(index)
        if parts is not None:
            break
    for index, node in reversed(chain):
        parent_id, ids, edges = parts
        entity_id = node.entity_id
        step = node.step
        source, target = (entity_id, parent_id) if step.reversed else (parent_id, entity_id)
        edge = Edge(source=source, target=target, relation=step.relation, weight=step.weight)
        parts = (entity_id, ids + (entity_id,), edges + (edge,))
        cache[index] = parts
    return parts


def _unlisted_parent(node: pb.ContextNode) -> Unknown:
    return Unknown(
        f"context node {node.entity_id!r} has a step from node {node.step.parent}, "
        "which is not listed before it"
    )


def _node_chunks(arg: Tuple[Any, int]) -> List[Chunk]:
    nodes, index = arg
    return [chunk_from_proto(c) for c in nodes[index].chunks]


def _context_nodes(messages: Any) -> List[ContextNode]:
    """The nodes of a context: id and hop now, ``path`` and ``chunks`` when first read."""
    reply_node = ContextNode._from_reply  # type: ignore[attr-defined]
    cache: Dict[int, Any] = {}
    return [
        reply_node(n.entity_id, n.hop, Deferred(_node_path, (messages, cache, index)),
                   Deferred(_node_chunks, (messages, index)))
        for index, n in enumerate(messages)
    ]


def _context_of(context: pb.QueryContext) -> QueryContext:
    """A query's context as :attr:`QueryResponse.context` holds it: ``ids`` read from the
    reply, the nodes and edges converted when first read."""
    return QueryContext(
        nodes=Deferred(_context_nodes, context.nodes),  # type: ignore[arg-type]
        edges=Deferred(_edges_of, context.edges),  # type: ignore[arg-type]
        truncated=context.truncated,
        truncated_by=list(context.truncated_by),
    )


def context_from_proto(context: pb.QueryContext) -> QueryContext:
    """A query's context with its nodes converted (each node's ``path`` and ``chunks``, and the
    context's ``edges``, when first read). A step from a node not listed before it raises here
    (in a query reply's context, when that node's ``path`` is first read)."""
    out = _context_of(context)
    out.nodes  # converts the nodes now
    for index, node in enumerate(context.nodes):
        if node.HasField("step") and node.step.parent >= index:
            raise _unlisted_parent(node)
    return out


def traverse_from_proto(response: pb.TraverseResponse) -> TraverseResult:
    return TraverseResult(
        nodes=[
            TraversedNode(
                id=n.entity_id,
                depth=n.depth,
                path=path_from_proto(n.path),
                entity=entity_from_proto(n.entity) if n.HasField("entity") else None,
            )
            for n in response.nodes
        ],
        truncated=response.truncated,
    )


def health_from_proto(response: pb.HealthCheckResponse) -> Health:
    return Health(
        healthy=response.healthy,
        status=response.status,
        version=response.version,
        timestamp_nanos=response.timestamp_nanos,
    )
