"""Typed results and inputs of the `allidb` package (plain dataclasses, no protobuf).

Writing: build :class:`Entity` (``vector`` for the usual single embedding) and :class:`Edge`.
Reading: every call returns these dataclasses; vectors come back as lists of floats, or as
float32 numpy arrays from :meth:`Entity.vector_array` and :meth:`QueryResponse.vectors_array`.

Replies are converted lazily, field by field, when first read (then kept): a query reply gives
its ids and scores (:attr:`QueryResponse.ids`, :attr:`QueryResponse.scores`, ``len()``) straight
from the reply, and builds its :class:`QueryResult` objects when ``results`` is first read (or
iterated, or indexed); a result converts its ``entity`` and its explanation (``components``,
``path``, ``pagerank``, ``lexical``) when each is first read; the context when
``response.context`` is first read, and in it each node's ``path`` and ``chunks`` and the
context's ``edges`` when first read. An entity read from the server converts its vectors and
edges when they are first read (turning 384 floats into Python floats costs more than the rest
of an entity). The fields are plain lists and dataclasses all the same (``==``, ``repr``,
``asdict``, ``replace``, copy and pickle see the converted values), and what is never read is
never converted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

__all__ = [
    "Embedding",
    "Edge",
    "Chunk",
    "Entity",
    "Path",
    "ScoreComponents",
    "LexicalMatch",
    "PageRank",
    "QueryResult",
    "ContextNode",
    "QueryContext",
    "QueryResponse",
    "TraversedNode",
    "TraverseResult",
    "GetManyResult",
    "PutFailure",
    "PutManyResult",
    "ScanPage",
    "Health",
    "Weights",
    "PageRankOptions",
    "VectorLike",
]

#: A vector: a list or tuple of numbers, or anything with ``tolist()`` (a 1-d numpy array).
VectorLike = Union[Sequence[float], Any]


@dataclass
class Embedding:
    """One versioned embedding; the highest version is the searchable one.

    ``version`` 0 and ``timestamp_nanos`` 0 are assigned by the server on write.
    """

    vector: List[float]
    version: int = 0
    timestamp_nanos: int = 0


@dataclass
class Edge:
    """A directed, labelled, weighted edge ``source -> target``.

    On an entity's ``edges`` (its outgoing edges) ``source`` may stay empty: it means the
    entity itself (:meth:`Edge.to` builds such an edge). :meth:`allidb.Client.add_edges` needs
    both ends.
    """

    source: str
    target: str
    relation: str
    weight: float = 1.0
    timestamp_nanos: int = 0
    #: The sources (documents) that support the edge; empty on write = the entity's.
    source_ids: List[str] = field(default_factory=list)

    @classmethod
    def to(cls, target: str, relation: str, weight: float = 1.0) -> "Edge":
        """An outgoing edge of the entity it is put on: ``Entity(..., edges=[Edge.to("b", "cites")])``."""
        return cls("", target, relation, weight)


@dataclass
class Chunk:
    """A text chunk attached to an entity."""

    id: str
    text: str
    metadata: Dict[str, str] = field(default_factory=dict)
    #: The sources (documents) that support the chunk; empty on write = the entity's.
    source_ids: List[str] = field(default_factory=list)


@dataclass
class Entity:
    """An entity: id, type, embedding(s), attributes, text chunks and edges.

    Writing: set ``vector`` for one embedding (a list, tuple or numpy array of the tenant's
    dimension), or ``embeddings`` for explicit versions (not both with different values).
    ``edges`` are the outgoing edges (each also becomes an incoming edge of its target).
    Reading: ``vector`` is the searchable (highest-version) embedding, ``embeddings`` all of
    them, ``incoming_edges`` the edges into the entity, and the server's timestamps are set.
    """

    id: str
    vector: Optional[VectorLike] = None
    type: str = ""
    attributes: Dict[str, str] = field(default_factory=dict)
    chunks: List[Chunk] = field(default_factory=list)
    edges: List[Edge] = field(default_factory=list)
    importance: float = 0.0
    embeddings: List[Embedding] = field(default_factory=list)
    incoming_edges: List[Edge] = field(default_factory=list)
    tenant_id: str = ""
    created_at_nanos: int = 0
    updated_at_nanos: int = 0
    #: Typed attributes (bool, int, float, datetime, list of str; a str too): what filters
    #: compare by type (``{"year": {"$gte": 2021}}``). A key is in one of the two maps.
    typed_attributes: Dict[str, Any] = field(default_factory=dict)
    #: The sources (documents) that support the entity (docs/python.md "Sources"): with
    #: ``put(..., merge=True)`` two documents' writes of one entity merge their support, and
    #: :meth:`allidb.Client.delete_by_source` removes what one document contributed.
    source_ids: List[str] = field(default_factory=list)
    #: When the entity expires, nanoseconds since the Unix epoch (0: never; docs/python.md
    #: "Expiry"). Reads return it; on a write it must lie ahead of the server's clock.
    expires_at_nanos: int = 0
    #: Time to live in seconds, writing only: the entity expires this long after the write (the
    #: server sets ``expires_at_nanos``). 0: the tenant's default TTL, if any.
    ttl_secs: int = 0

    @property
    def text(self) -> str:
        """The texts of the chunks joined by blank lines ("" without chunks)."""
        return "\n\n".join(chunk.text for chunk in self.chunks)

    def vector_array(self) -> Any:
        """``vector`` as a 1-d float32 numpy array (a new one at each call), or None when the
        entity has no vector. An entity read from the server whose ``vector`` was not read yet
        copies the reply's float32 values into the array without making Python floats (the
        values are the server's, bit for bit). Needs numpy (``pip install 'allidb[numpy]'``)."""
        np = _numpy()
        value = self.__dict__.get("vector")
        if type(value) is Deferred and value.array is not None:
            return value.array(value.arg, np)
        value = self.vector
        if value is None:
            return None
        return np.array(value, dtype=np.float32)


class Deferred:
    """A field value computed on first read (see :func:`_deferrable`); internal.

    ``make(arg)`` computes the value; ``array(arg, numpy)``, when given, computes it as a numpy
    array instead (the numpy path of a vector). Copying or pickling an object that still holds
    one stores the computed value.
    """

    __slots__ = ("make", "arg", "array")

    def __init__(
        self,
        make: Callable[[Any], Any],
        arg: Any,
        array: Optional[Callable[[Any, Any], Any]] = None,
    ) -> None:
        self.make = make
        self.arg = arg
        self.array = array

    def __reduce__(self) -> Any:
        return (_identity, (self.make(self.arg),))


def _identity(value: Any) -> Any:
    return value


def _deferrable(cls: type, *names: str) -> None:
    """Lets the dataclass fields ``names`` of ``cls`` hold a :class:`Deferred`, replaced by
    its value when the field is first read. Reading and writing the field otherwise behave as
    for any attribute (``__init__``, ``==``, ``repr``, ``asdict``, ``replace`` all see the
    value)."""

    def make_property(name: str) -> property:
        def get(self: Any) -> Any:
            value = self.__dict__[name]
            if type(value) is Deferred:
                value = value.make(value.arg)
                self.__dict__[name] = value
            return value

        def set_(self: Any, value: Any) -> None:
            self.__dict__[name] = value

        return property(get, set_)

    for name in names:
        setattr(cls, name, make_property(name))


def _pending(obj: Any, name: str) -> Any:
    """The reply part a still-unconverted field of ``obj`` would be converted from, else None."""
    value = obj.__dict__.get(name)
    return value.arg if type(value) is Deferred else None


def _numpy() -> Any:
    """The numpy module, imported on the first use of the numpy API."""
    try:
        import numpy
    except ImportError:
        raise ImportError(
            "this allidb call returns numpy arrays and needs numpy, which is not installed: "
            "pip install 'allidb[numpy]' (or numpy)"
        ) from None
    return numpy


def _stack_vectors(entities: Iterable[Tuple[str, Optional["Entity"]]]) -> Any:
    """A 2-d float32 array of the entities' vectors, one row each (``(id, entity)`` pairs);
    ValueError naming the first id without an entity (``include_entity=False``) or without a
    vector."""
    np = _numpy()
    rows = []
    for entity_id, entity in entities:
        row = entity.vector_array() if entity is not None else None
        if row is None:
            if entity is None:
                raise ValueError(f"result {entity_id!r} has no entity (include_entity=False?)")
            raise ValueError(f"entity {entity_id!r} has no vector")
        rows.append(row)
    if not rows:
        return np.empty((0, 0), dtype=np.float32)
    return np.stack(rows)



@dataclass
class Path:
    """How a result was reached: entity ids seed first, and the edges followed."""

    entity_ids: List[str] = field(default_factory=list)
    edges: List[Edge] = field(default_factory=list)

    @property
    def hops(self) -> int:
        """Edges followed from the seed (0 for a seed itself)."""
        return max(len(self.entity_ids) - 1, 0)


@dataclass
class ScoreComponents:
    """The terms of a result's unified score, after weighting. With a query ``text``,
    ``vector`` and ``lexical`` are the two parts of the fused relevance term."""

    vector: float
    graph: float
    importance: float
    recency: float
    lexical: float = 0.0


@dataclass
class LexicalMatch:
    """How a result matched a query's text: its BM25 score and, per matched query term
    (analyzed: lowercased, ASCII-folded), its BM25 contribution."""

    bm25: float
    terms: Dict[str, float] = field(default_factory=dict)


@dataclass
class PageRank:
    """How a personalized-PageRank result got its mass (``seed_shares``: seed id -> share)."""

    mass: float
    iterations: int
    seed_shares: Dict[str, float] = field(default_factory=dict)


@dataclass
class QueryResult:
    """One query result. ``entity`` is None when ``include_entity=False``; ``components``,
    ``path`` and ``pagerank`` are set when the query asked to ``explain``."""

    id: str
    score: float
    entity: Optional[Entity] = None
    components: Optional[ScoreComponents] = None
    path: Optional[Path] = None
    pagerank: Optional[PageRank] = None
    lexical: Optional[LexicalMatch] = None


_deferrable(Entity, "vector", "embeddings", "edges", "incoming_edges")
_deferrable(QueryResult, "entity", "components", "path", "pagerank", "lexical")


@dataclass
class ContextNode:
    """One entity of a query's context: hop from the nearest seed, first path, chunks."""

    id: str
    hop: int
    path: Path
    chunks: List[Chunk] = field(default_factory=list)


@dataclass
class QueryContext:
    """The subgraph a query's expansion visited (``include_context=True``)."""

    nodes: List[ContextNode] = field(default_factory=list)
    edges: List[Edge] = field(default_factory=list)
    truncated: bool = False
    truncated_by: List[str] = field(default_factory=list)

    @property
    def ids(self) -> List[str]:
        """The context's entity ids, in the reply's order (seeds first), read from the reply
        without building ``nodes``."""
        pending = _pending(self, "nodes")
        if pending is not None:
            return [node.entity_id for node in pending]
        return [node.id for node in self.nodes]


_deferrable(ContextNode, "path", "chunks")
_deferrable(QueryContext, "nodes", "edges")


def _context_node_from_reply(id: str, hop: int, path: Any, chunks: Any) -> ContextNode:
    """A ContextNode of a reply without ``__init__`` (which sets the fields through their
    properties): its ``__dict__`` directly, every field of the dataclass."""
    node = object.__new__(ContextNode)
    node.__dict__ = {"id": id, "hop": hop, "path": path, "chunks": chunks}
    return node


ContextNode._from_reply = staticmethod(_context_node_from_reply)  # type: ignore[attr-defined]


@dataclass
class FilterPlan:
    """How a filtered query found its seeds (``explain=True`` with a filter, on a single node):
    ``plan`` is ``"exact"`` (the matching set ranked exactly) or ``"filtered_hnsw"`` (the filter
    applied inside the HNSW walk); ``entities`` the tenant's live entities; the matches the
    payload index estimated and the matches counted, each also as a fraction of ``entities``."""

    plan: str
    entities: int
    estimated_matches: float
    estimated_selectivity: float
    matched: int
    real_selectivity: float


@dataclass
class QueryResponse:
    """A query's results (best first) with its trace id and, when asked, its context and
    (``explain=True`` with a filter) its :class:`FilterPlan`.

    Iterating, indexing and ``len()`` work on ``results``.
    """

    results: List[QueryResult] = field(default_factory=list)
    trace_id: str = ""
    total_results: int = 0
    context: Optional[QueryContext] = None
    filter_plan: Optional[FilterPlan] = None

    def __iter__(self) -> Iterator[QueryResult]:
        return iter(self.results)

    def __len__(self) -> int:
        pending = _pending(self, "results")
        return len(pending) if pending is not None else len(self.results)

    def __getitem__(self, index: int) -> QueryResult:
        return self.results[index]

    @property
    def ids(self) -> List[str]:
        """The result ids in order (read from the reply without building ``results``)."""
        pending = _pending(self, "results")
        if pending is not None:
            return [result.entity_id for result in pending]
        return [result.id for result in self.results]

    @property
    def scores(self) -> List[float]:
        """The result scores in order (read from the reply without building ``results``)."""
        pending = _pending(self, "results")
        if pending is not None:
            return [result.score for result in pending]
        return [result.score for result in self.results]

    def vectors_array(self) -> Any:
        """The results' vectors as a 2-d float32 numpy array, one row per result in order
        (see :meth:`Entity.vector_array`; while ``results`` is not read yet, straight from the
        reply's bytes in one copy); ValueError when a result has no entity
        (``include_entity=False``) or no vector. Needs numpy."""
        np = _numpy()
        value = self.__dict__.get("results")
        if type(value) is Deferred and value.array is not None:
            return value.array(value.arg, np)
        return _stack_vectors((result.id, result.entity) for result in self.results)


_deferrable(QueryResponse, "results", "context", "filter_plan")


@dataclass
class TraversedNode:
    """One entity reached by a traversal: depth (0 = a start), first path, entity."""

    id: str
    depth: int
    path: Path
    entity: Optional[Entity] = None


@dataclass
class TraverseResult:
    """The nodes of a traversal in breadth-first order; iterable like a list of nodes."""

    nodes: List[TraversedNode] = field(default_factory=list)
    truncated: bool = False

    def __iter__(self) -> Iterator[TraversedNode]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def ids(self) -> List[str]:
        """The reached ids in breadth-first order."""
        return [node.id for node in self.nodes]


@dataclass
class GetManyResult:
    """The entities found (in request order) and the ids not found."""

    entities: List[Entity] = field(default_factory=list)
    missing_ids: List[str] = field(default_factory=list)

    def vectors_array(self) -> Any:
        """The found entities' vectors as a 2-d float32 numpy array, one row per entity of
        ``entities`` (see :meth:`Entity.vector_array`); ValueError naming an entity without a
        vector. Needs numpy."""
        return _stack_vectors((entity.id, entity) for entity in self.entities)


@dataclass
class PutFailure:
    """One entity the server refused, with its reason."""

    id: str
    message: str


@dataclass
class PutManyResult:
    """What :meth:`allidb.Client.put_many` did: counts, and each refused entity."""

    total: int = 0
    written: int = 0
    failed: int = 0
    failures: List[PutFailure] = field(default_factory=list)
    batches: int = 0


@dataclass
class ScanPage:
    """One page of a scan; ``next_page_token`` is empty on the last page."""

    entities: List[Entity]
    next_page_token: str


@dataclass
class Health:
    """The server's health: ``status`` is ``healthy``, ``starting`` or ``stopping``."""

    healthy: bool
    status: str
    version: str
    timestamp_nanos: int


@dataclass
class Weights:
    """Weights of the unified score; None keeps the server's default
    (vector 1.0, graph 0.3, importance 0.2, recency 0.1)."""

    vector: Optional[float] = None
    graph: Optional[float] = None
    importance: Optional[float] = None
    recency: Optional[float] = None


@dataclass
class PageRankOptions:
    """Options of personalized-PageRank scoring; None keeps the server's default."""

    damping: Optional[float] = None
    max_iterations: Optional[int] = None
    tolerance: Optional[float] = None
    similarity_weight: Optional[float] = None


@dataclass
class SourceDeleted:
    """What :meth:`allidb.Client.delete_by_source` / :meth:`~allidb.Client.replace_source`
    changed: entities removed (only that source supported them), entities kept with the source
    taken off (or named again by the new version), and entities of the new version written."""

    deleted: int = 0
    updated: int = 0
    written: int = 0


@dataclass
class DeleteByFilterResult:
    """What :meth:`allidb.Client.delete_by_filter` did: with ``dry_run`` ``matched`` counts
    every entity the filter matches; otherwise ``deleted`` entities went, and ``more`` says
    others match beyond the call's ``max_deletes``."""

    matched: int = 0
    deleted: int = 0
    more: bool = False
