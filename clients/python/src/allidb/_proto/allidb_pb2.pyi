from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConsistencyLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSISTENCY_ONE: _ClassVar[ConsistencyLevel]
    CONSISTENCY_QUORUM: _ClassVar[ConsistencyLevel]
    CONSISTENCY_ALL: _ClassVar[ConsistencyLevel]

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_OUT: _ClassVar[Direction]
    DIRECTION_IN: _ClassVar[Direction]
    DIRECTION_BOTH: _ClassVar[Direction]

class WriteMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WRITE_MODE_REPLACE: _ClassVar[WriteMode]
    WRITE_MODE_MERGE_SOURCES: _ClassVar[WriteMode]

class Fusion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUSION_UNSPECIFIED: _ClassVar[Fusion]
    FUSION_RRF: _ClassVar[Fusion]
    FUSION_DBSF: _ClassVar[Fusion]

class ScoringMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCORING_UNIFIED: _ClassVar[ScoringMode]
    SCORING_PERSONALIZED_PAGERANK: _ClassVar[ScoringMode]
CONSISTENCY_ONE: ConsistencyLevel
CONSISTENCY_QUORUM: ConsistencyLevel
CONSISTENCY_ALL: ConsistencyLevel
DIRECTION_OUT: Direction
DIRECTION_IN: Direction
DIRECTION_BOTH: Direction
WRITE_MODE_REPLACE: WriteMode
WRITE_MODE_MERGE_SOURCES: WriteMode
FUSION_UNSPECIFIED: Fusion
FUSION_RRF: Fusion
FUSION_DBSF: Fusion
SCORING_UNIFIED: ScoringMode
SCORING_PERSONALIZED_PAGERANK: ScoringMode

class VectorEmbedding(_message.Message):
    __slots__ = ("version", "vector", "timestamp_nanos")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NANOS_FIELD_NUMBER: _ClassVar[int]
    version: int
    vector: _containers.RepeatedScalarFieldContainer[float]
    timestamp_nanos: int
    def __init__(self, version: _Optional[int] = ..., vector: _Optional[_Iterable[float]] = ..., timestamp_nanos: _Optional[int] = ...) -> None: ...

class GraphEdge(_message.Message):
    __slots__ = ("from_entity", "to_entity", "relation", "weight", "timestamp_nanos", "source_ids")
    FROM_ENTITY_FIELD_NUMBER: _ClassVar[int]
    TO_ENTITY_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NANOS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IDS_FIELD_NUMBER: _ClassVar[int]
    from_entity: str
    to_entity: str
    relation: str
    weight: float
    timestamp_nanos: int
    source_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, from_entity: _Optional[str] = ..., to_entity: _Optional[str] = ..., relation: _Optional[str] = ..., weight: _Optional[float] = ..., timestamp_nanos: _Optional[int] = ..., source_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class TextChunk(_message.Message):
    __slots__ = ("chunk_id", "text", "metadata", "source_ids")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IDS_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    text: str
    metadata: _containers.ScalarMap[str, str]
    source_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, chunk_id: _Optional[str] = ..., text: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., source_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Entity(_message.Message):
    __slots__ = ("entity_id", "tenant_id", "entity_type", "embeddings", "incoming_edges", "outgoing_edges", "chunks", "importance", "created_at_nanos", "updated_at_nanos", "attributes", "typed_attributes", "source_ids", "expires_at_nanos", "ttl_secs")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TypedAttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: AttributeValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AttributeValue, _Mapping]] = ...) -> None: ...
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    INCOMING_EDGES_FIELD_NUMBER: _ClassVar[int]
    OUTGOING_EDGES_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_NANOS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_NANOS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TYPED_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_NANOS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECS_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    tenant_id: str
    entity_type: str
    embeddings: _containers.RepeatedCompositeFieldContainer[VectorEmbedding]
    incoming_edges: _containers.RepeatedCompositeFieldContainer[GraphEdge]
    outgoing_edges: _containers.RepeatedCompositeFieldContainer[GraphEdge]
    chunks: _containers.RepeatedCompositeFieldContainer[TextChunk]
    importance: float
    created_at_nanos: int
    updated_at_nanos: int
    attributes: _containers.ScalarMap[str, str]
    typed_attributes: _containers.MessageMap[str, AttributeValue]
    source_ids: _containers.RepeatedScalarFieldContainer[str]
    expires_at_nanos: int
    ttl_secs: int
    def __init__(self, entity_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., entity_type: _Optional[str] = ..., embeddings: _Optional[_Iterable[_Union[VectorEmbedding, _Mapping]]] = ..., incoming_edges: _Optional[_Iterable[_Union[GraphEdge, _Mapping]]] = ..., outgoing_edges: _Optional[_Iterable[_Union[GraphEdge, _Mapping]]] = ..., chunks: _Optional[_Iterable[_Union[TextChunk, _Mapping]]] = ..., importance: _Optional[float] = ..., created_at_nanos: _Optional[int] = ..., updated_at_nanos: _Optional[int] = ..., attributes: _Optional[_Mapping[str, str]] = ..., typed_attributes: _Optional[_Mapping[str, AttributeValue]] = ..., source_ids: _Optional[_Iterable[str]] = ..., expires_at_nanos: _Optional[int] = ..., ttl_secs: _Optional[int] = ...) -> None: ...

class AttributeValue(_message.Message):
    __slots__ = ("string_value", "int_value", "double_value", "bool_value", "timestamp_nanos", "string_list")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NANOS_FIELD_NUMBER: _ClassVar[int]
    STRING_LIST_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    int_value: int
    double_value: float
    bool_value: bool
    timestamp_nanos: int
    string_list: StringList
    def __init__(self, string_value: _Optional[str] = ..., int_value: _Optional[int] = ..., double_value: _Optional[float] = ..., bool_value: _Optional[bool] = ..., timestamp_nanos: _Optional[int] = ..., string_list: _Optional[_Union[StringList, _Mapping]] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class FilterExpression(_message.Message):
    __slots__ = ("eq", "ne", "gt", "gte", "lt", "lte", "nin", "exists", "contains", "prefix")
    AND_FIELD_NUMBER: _ClassVar[int]
    OR_FIELD_NUMBER: _ClassVar[int]
    NOT_FIELD_NUMBER: _ClassVar[int]
    EQ_FIELD_NUMBER: _ClassVar[int]
    NE_FIELD_NUMBER: _ClassVar[int]
    GT_FIELD_NUMBER: _ClassVar[int]
    GTE_FIELD_NUMBER: _ClassVar[int]
    LT_FIELD_NUMBER: _ClassVar[int]
    LTE_FIELD_NUMBER: _ClassVar[int]
    IN_FIELD_NUMBER: _ClassVar[int]
    NIN_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    CONTAINS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    eq: FieldCondition
    ne: FieldCondition
    gt: FieldCondition
    gte: FieldCondition
    lt: FieldCondition
    lte: FieldCondition
    nin: FieldValues
    exists: str
    contains: FieldCondition
    prefix: FieldCondition
    def __init__(self, eq: _Optional[_Union[FieldCondition, _Mapping]] = ..., ne: _Optional[_Union[FieldCondition, _Mapping]] = ..., gt: _Optional[_Union[FieldCondition, _Mapping]] = ..., gte: _Optional[_Union[FieldCondition, _Mapping]] = ..., lt: _Optional[_Union[FieldCondition, _Mapping]] = ..., lte: _Optional[_Union[FieldCondition, _Mapping]] = ..., nin: _Optional[_Union[FieldValues, _Mapping]] = ..., exists: _Optional[str] = ..., contains: _Optional[_Union[FieldCondition, _Mapping]] = ..., prefix: _Optional[_Union[FieldCondition, _Mapping]] = ..., **kwargs) -> None: ...

class FieldCondition(_message.Message):
    __slots__ = ("field", "value")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    field: str
    value: AttributeValue
    def __init__(self, field: _Optional[str] = ..., value: _Optional[_Union[AttributeValue, _Mapping]] = ...) -> None: ...

class FieldValues(_message.Message):
    __slots__ = ("field", "values")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    field: str
    values: _containers.RepeatedCompositeFieldContainer[AttributeValue]
    def __init__(self, field: _Optional[str] = ..., values: _Optional[_Iterable[_Union[AttributeValue, _Mapping]]] = ...) -> None: ...

class FilterPlan(_message.Message):
    __slots__ = ("plan", "entities", "estimated_matches", "estimated_selectivity", "matched", "real_selectivity")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_MATCHES_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_SELECTIVITY_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    REAL_SELECTIVITY_FIELD_NUMBER: _ClassVar[int]
    plan: str
    entities: int
    estimated_matches: float
    estimated_selectivity: float
    matched: int
    real_selectivity: float
    def __init__(self, plan: _Optional[str] = ..., entities: _Optional[int] = ..., estimated_matches: _Optional[float] = ..., estimated_selectivity: _Optional[float] = ..., matched: _Optional[int] = ..., real_selectivity: _Optional[float] = ...) -> None: ...

class PutEntityRequest(_message.Message):
    __slots__ = ("entity", "consistency_level", "trace_id", "mode")
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    entity: Entity
    consistency_level: ConsistencyLevel
    trace_id: str
    mode: WriteMode
    def __init__(self, entity: _Optional[_Union[Entity, _Mapping]] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ..., trace_id: _Optional[str] = ..., mode: _Optional[_Union[WriteMode, str]] = ...) -> None: ...

class PutEntityResponse(_message.Message):
    __slots__ = ("success", "error_message", "entity_id")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error_message: str
    entity_id: str
    def __init__(self, success: _Optional[bool] = ..., error_message: _Optional[str] = ..., entity_id: _Optional[str] = ...) -> None: ...

class BatchPutEntitiesRequest(_message.Message):
    __slots__ = ("entities", "consistency_level", "trace_id", "mode")
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    entities: _containers.RepeatedCompositeFieldContainer[Entity]
    consistency_level: ConsistencyLevel
    trace_id: str
    mode: WriteMode
    def __init__(self, entities: _Optional[_Iterable[_Union[Entity, _Mapping]]] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ..., trace_id: _Optional[str] = ..., mode: _Optional[_Union[WriteMode, str]] = ...) -> None: ...

class BatchPutEntitiesResponse(_message.Message):
    __slots__ = ("success", "error_message", "entity_ids", "success_count", "failure_count")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_COUNT_FIELD_NUMBER: _ClassVar[int]
    success: bool
    error_message: str
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    success_count: int
    failure_count: int
    def __init__(self, success: _Optional[bool] = ..., error_message: _Optional[str] = ..., entity_ids: _Optional[_Iterable[str]] = ..., success_count: _Optional[int] = ..., failure_count: _Optional[int] = ...) -> None: ...

class QueryFilter(_message.Message):
    __slots__ = ("entity_types", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENTITY_TYPES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    entity_types: _containers.RepeatedScalarFieldContainer[str]
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, entity_types: _Optional[_Iterable[str]] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ScoringWeights(_message.Message):
    __slots__ = ("vector", "graph", "importance", "recency")
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    RECENCY_FIELD_NUMBER: _ClassVar[int]
    vector: float
    graph: float
    importance: float
    recency: float
    def __init__(self, vector: _Optional[float] = ..., graph: _Optional[float] = ..., importance: _Optional[float] = ..., recency: _Optional[float] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("query_vector", "k", "expand_factor", "trace_id", "consistency_level", "filter", "max_hops", "relations", "direction", "weights", "hop_decay", "ef", "include_entity", "explain", "min_weight", "seeds", "include_context", "context_chunks", "max_nodes", "max_edges", "max_fan_out", "max_context_bytes", "scoring", "pagerank", "allow_partial", "where", "text", "fusion", "lexical_weight", "rank_constant", "routing_key")
    QUERY_VECTOR_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EXPAND_FACTOR_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MAX_HOPS_FIELD_NUMBER: _ClassVar[int]
    RELATIONS_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    HOP_DECAY_FIELD_NUMBER: _ClassVar[int]
    EF_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ENTITY_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    MIN_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SEEDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    MAX_EDGES_FIELD_NUMBER: _ClassVar[int]
    MAX_FAN_OUT_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTEXT_BYTES_FIELD_NUMBER: _ClassVar[int]
    SCORING_FIELD_NUMBER: _ClassVar[int]
    PAGERANK_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    RANK_CONSTANT_FIELD_NUMBER: _ClassVar[int]
    ROUTING_KEY_FIELD_NUMBER: _ClassVar[int]
    query_vector: _containers.RepeatedScalarFieldContainer[float]
    k: int
    expand_factor: int
    trace_id: str
    consistency_level: ConsistencyLevel
    filter: QueryFilter
    max_hops: int
    relations: _containers.RepeatedScalarFieldContainer[str]
    direction: Direction
    weights: ScoringWeights
    hop_decay: float
    ef: int
    include_entity: bool
    explain: bool
    min_weight: float
    seeds: int
    include_context: bool
    context_chunks: bool
    max_nodes: int
    max_edges: int
    max_fan_out: int
    max_context_bytes: int
    scoring: ScoringMode
    pagerank: PageRankOptions
    allow_partial: bool
    where: FilterExpression
    text: str
    fusion: Fusion
    lexical_weight: float
    rank_constant: int
    routing_key: str
    def __init__(self, query_vector: _Optional[_Iterable[float]] = ..., k: _Optional[int] = ..., expand_factor: _Optional[int] = ..., trace_id: _Optional[str] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ..., filter: _Optional[_Union[QueryFilter, _Mapping]] = ..., max_hops: _Optional[int] = ..., relations: _Optional[_Iterable[str]] = ..., direction: _Optional[_Union[Direction, str]] = ..., weights: _Optional[_Union[ScoringWeights, _Mapping]] = ..., hop_decay: _Optional[float] = ..., ef: _Optional[int] = ..., include_entity: _Optional[bool] = ..., explain: _Optional[bool] = ..., min_weight: _Optional[float] = ..., seeds: _Optional[int] = ..., include_context: _Optional[bool] = ..., context_chunks: _Optional[bool] = ..., max_nodes: _Optional[int] = ..., max_edges: _Optional[int] = ..., max_fan_out: _Optional[int] = ..., max_context_bytes: _Optional[int] = ..., scoring: _Optional[_Union[ScoringMode, str]] = ..., pagerank: _Optional[_Union[PageRankOptions, _Mapping]] = ..., allow_partial: _Optional[bool] = ..., where: _Optional[_Union[FilterExpression, _Mapping]] = ..., text: _Optional[str] = ..., fusion: _Optional[_Union[Fusion, str]] = ..., lexical_weight: _Optional[float] = ..., rank_constant: _Optional[int] = ..., routing_key: _Optional[str] = ...) -> None: ...

class PageRankOptions(_message.Message):
    __slots__ = ("damping", "max_iterations", "tolerance", "similarity_weight")
    DAMPING_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    damping: float
    max_iterations: int
    tolerance: float
    similarity_weight: float
    def __init__(self, damping: _Optional[float] = ..., max_iterations: _Optional[int] = ..., tolerance: _Optional[float] = ..., similarity_weight: _Optional[float] = ...) -> None: ...

class GraphPath(_message.Message):
    __slots__ = ("entity_ids", "edges")
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    edges: _containers.RepeatedCompositeFieldContainer[GraphEdge]
    def __init__(self, entity_ids: _Optional[_Iterable[str]] = ..., edges: _Optional[_Iterable[_Union[GraphEdge, _Mapping]]] = ...) -> None: ...

class QueryExplanation(_message.Message):
    __slots__ = ("vector_score", "graph_score", "importance_score", "recency_score", "path", "pagerank", "lexical_score", "lexical")
    VECTOR_SCORE_FIELD_NUMBER: _ClassVar[int]
    GRAPH_SCORE_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_SCORE_FIELD_NUMBER: _ClassVar[int]
    RECENCY_SCORE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PAGERANK_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_SCORE_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_FIELD_NUMBER: _ClassVar[int]
    vector_score: float
    graph_score: float
    importance_score: float
    recency_score: float
    path: GraphPath
    pagerank: PageRankExplanation
    lexical_score: float
    lexical: LexicalExplanation
    def __init__(self, vector_score: _Optional[float] = ..., graph_score: _Optional[float] = ..., importance_score: _Optional[float] = ..., recency_score: _Optional[float] = ..., path: _Optional[_Union[GraphPath, _Mapping]] = ..., pagerank: _Optional[_Union[PageRankExplanation, _Mapping]] = ..., lexical_score: _Optional[float] = ..., lexical: _Optional[_Union[LexicalExplanation, _Mapping]] = ...) -> None: ...

class LexicalExplanation(_message.Message):
    __slots__ = ("bm25", "matched_terms")
    BM25_FIELD_NUMBER: _ClassVar[int]
    MATCHED_TERMS_FIELD_NUMBER: _ClassVar[int]
    bm25: float
    matched_terms: _containers.RepeatedCompositeFieldContainer[MatchedTerm]
    def __init__(self, bm25: _Optional[float] = ..., matched_terms: _Optional[_Iterable[_Union[MatchedTerm, _Mapping]]] = ...) -> None: ...

class MatchedTerm(_message.Message):
    __slots__ = ("term", "score", "share")
    TERM_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    term: str
    score: float
    share: float
    def __init__(self, term: _Optional[str] = ..., score: _Optional[float] = ..., share: _Optional[float] = ...) -> None: ...

class PageRankExplanation(_message.Message):
    __slots__ = ("mass", "iterations", "seed_shares")
    MASS_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    SEED_SHARES_FIELD_NUMBER: _ClassVar[int]
    mass: float
    iterations: int
    seed_shares: _containers.RepeatedCompositeFieldContainer[SeedShare]
    def __init__(self, mass: _Optional[float] = ..., iterations: _Optional[int] = ..., seed_shares: _Optional[_Iterable[_Union[SeedShare, _Mapping]]] = ...) -> None: ...

class SeedShare(_message.Message):
    __slots__ = ("entity_id", "share")
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    share: float
    def __init__(self, entity_id: _Optional[str] = ..., share: _Optional[float] = ...) -> None: ...

class ContextNode(_message.Message):
    __slots__ = ("entity_id", "hop", "path", "chunks", "step")
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    HOP_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    hop: int
    path: GraphPath
    chunks: _containers.RepeatedCompositeFieldContainer[TextChunk]
    step: ContextStep
    def __init__(self, entity_id: _Optional[str] = ..., hop: _Optional[int] = ..., path: _Optional[_Union[GraphPath, _Mapping]] = ..., chunks: _Optional[_Iterable[_Union[TextChunk, _Mapping]]] = ..., step: _Optional[_Union[ContextStep, _Mapping]] = ...) -> None: ...

class ContextStep(_message.Message):
    __slots__ = ("parent", "relation", "weight", "reversed")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    REVERSED_FIELD_NUMBER: _ClassVar[int]
    parent: int
    relation: str
    weight: float
    reversed: bool
    def __init__(self, parent: _Optional[int] = ..., relation: _Optional[str] = ..., weight: _Optional[float] = ..., reversed: _Optional[bool] = ...) -> None: ...

class QueryContext(_message.Message):
    __slots__ = ("nodes", "edges", "truncated", "truncated_by")
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_BY_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[ContextNode]
    edges: _containers.RepeatedCompositeFieldContainer[GraphEdge]
    truncated: bool
    truncated_by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nodes: _Optional[_Iterable[_Union[ContextNode, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[GraphEdge, _Mapping]]] = ..., truncated: _Optional[bool] = ..., truncated_by: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ("entity_id", "score", "entity", "explanation")
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    score: float
    entity: Entity
    explanation: QueryExplanation
    def __init__(self, entity_id: _Optional[str] = ..., score: _Optional[float] = ..., entity: _Optional[_Union[Entity, _Mapping]] = ..., explanation: _Optional[_Union[QueryExplanation, _Mapping]] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("results", "trace_id", "total_results", "context", "coverage", "profile", "filter_plan")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_RESULTS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    FILTER_PLAN_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryResult]
    trace_id: str
    total_results: int
    context: QueryContext
    coverage: Coverage
    profile: ReadProfile
    filter_plan: FilterPlan
    def __init__(self, results: _Optional[_Iterable[_Union[QueryResult, _Mapping]]] = ..., trace_id: _Optional[str] = ..., total_results: _Optional[int] = ..., context: _Optional[_Union[QueryContext, _Mapping]] = ..., coverage: _Optional[_Union[Coverage, _Mapping]] = ..., profile: _Optional[_Union[ReadProfile, _Mapping]] = ..., filter_plan: _Optional[_Union[FilterPlan, _Mapping]] = ...) -> None: ...

class Coverage(_message.Message):
    __slots__ = ("ranges_total", "ranges_answered", "nodes_asked", "missing")
    RANGES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RANGES_ANSWERED_FIELD_NUMBER: _ClassVar[int]
    NODES_ASKED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    ranges_total: int
    ranges_answered: int
    nodes_asked: _containers.RepeatedScalarFieldContainer[str]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ranges_total: _Optional[int] = ..., ranges_answered: _Optional[int] = ..., nodes_asked: _Optional[_Iterable[str]] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...

class ReadProfile(_message.Message):
    __slots__ = ("rounds", "nodes")
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    rounds: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeCalls]
    def __init__(self, rounds: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeCalls, _Mapping]]] = ...) -> None: ...

class NodeCalls(_message.Message):
    __slots__ = ("node", "calls", "micros", "rows", "bytes_sent", "bytes_received")
    NODE_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    MICROS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    node: str
    calls: int
    micros: int
    rows: int
    bytes_sent: int
    bytes_received: int
    def __init__(self, node: _Optional[str] = ..., calls: _Optional[int] = ..., micros: _Optional[int] = ..., rows: _Optional[int] = ..., bytes_sent: _Optional[int] = ..., bytes_received: _Optional[int] = ...) -> None: ...

class RangeScanRequest(_message.Message):
    __slots__ = ("tenant_id", "start_key", "end_key", "limit", "page_token", "node_id", "consistency_level", "where", "routing_key")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    START_KEY_FIELD_NUMBER: _ClassVar[int]
    END_KEY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    ROUTING_KEY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    start_key: str
    end_key: str
    limit: int
    page_token: str
    node_id: str
    consistency_level: ConsistencyLevel
    where: FilterExpression
    routing_key: str
    def __init__(self, tenant_id: _Optional[str] = ..., start_key: _Optional[str] = ..., end_key: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., node_id: _Optional[str] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ..., where: _Optional[_Union[FilterExpression, _Mapping]] = ..., routing_key: _Optional[str] = ...) -> None: ...

class RangeScanResponse(_message.Message):
    __slots__ = ("entities", "next_page_token")
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entities: _containers.RepeatedCompositeFieldContainer[Entity]
    next_page_token: str
    def __init__(self, entities: _Optional[_Iterable[_Union[Entity, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReplicaReadRequest(_message.Message):
    __slots__ = ("key", "tenant_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    tenant_id: str
    def __init__(self, key: _Optional[str] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class ReplicaReadResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    def __init__(self, value: _Optional[bytes] = ...) -> None: ...

class ReplicaWriteRequest(_message.Message):
    __slots__ = ("key", "value", "tenant_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    tenant_id: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class ReplicaWriteResponse(_message.Message):
    __slots__ = ("success",)
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    def __init__(self, success: _Optional[bool] = ...) -> None: ...

class HealthCheckRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthCheckResponse(_message.Message):
    __slots__ = ("healthy", "status", "timestamp_nanos", "version")
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NANOS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    healthy: bool
    status: str
    timestamp_nanos: int
    version: str
    def __init__(self, healthy: _Optional[bool] = ..., status: _Optional[str] = ..., timestamp_nanos: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...

class GetEntityRequest(_message.Message):
    __slots__ = ("entity_id", "consistency_level", "trace_id")
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    consistency_level: ConsistencyLevel
    trace_id: str
    def __init__(self, entity_id: _Optional[str] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class GetEntityResponse(_message.Message):
    __slots__ = ("entity", "found")
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    entity: Entity
    found: bool
    def __init__(self, entity: _Optional[_Union[Entity, _Mapping]] = ..., found: _Optional[bool] = ...) -> None: ...

class GetEntitiesRequest(_message.Message):
    __slots__ = ("entity_ids", "consistency_level", "trace_id")
    ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    entity_ids: _containers.RepeatedScalarFieldContainer[str]
    consistency_level: ConsistencyLevel
    trace_id: str
    def __init__(self, entity_ids: _Optional[_Iterable[str]] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class GetEntitiesResponse(_message.Message):
    __slots__ = ("entities", "missing_ids")
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    MISSING_IDS_FIELD_NUMBER: _ClassVar[int]
    entities: _containers.RepeatedCompositeFieldContainer[Entity]
    missing_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, entities: _Optional[_Iterable[_Union[Entity, _Mapping]]] = ..., missing_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteEntityRequest(_message.Message):
    __slots__ = ("entity_id", "consistency_level", "trace_id")
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    consistency_level: ConsistencyLevel
    trace_id: str
    def __init__(self, entity_id: _Optional[str] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class DeleteEntityResponse(_message.Message):
    __slots__ = ("success", "found")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    success: bool
    found: bool
    def __init__(self, success: _Optional[bool] = ..., found: _Optional[bool] = ...) -> None: ...

class AddEdgesRequest(_message.Message):
    __slots__ = ("edges", "consistency_level", "trace_id")
    EDGES_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    edges: _containers.RepeatedCompositeFieldContainer[GraphEdge]
    consistency_level: ConsistencyLevel
    trace_id: str
    def __init__(self, edges: _Optional[_Iterable[_Union[GraphEdge, _Mapping]]] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class AddEdgesResponse(_message.Message):
    __slots__ = ("success", "edge_count")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    EDGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    success: bool
    edge_count: int
    def __init__(self, success: _Optional[bool] = ..., edge_count: _Optional[int] = ...) -> None: ...

class EdgeKey(_message.Message):
    __slots__ = ("from_entity", "to_entity", "relation")
    FROM_ENTITY_FIELD_NUMBER: _ClassVar[int]
    TO_ENTITY_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    from_entity: str
    to_entity: str
    relation: str
    def __init__(self, from_entity: _Optional[str] = ..., to_entity: _Optional[str] = ..., relation: _Optional[str] = ...) -> None: ...

class RemoveEdgesRequest(_message.Message):
    __slots__ = ("edges", "consistency_level", "trace_id")
    EDGES_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    edges: _containers.RepeatedCompositeFieldContainer[EdgeKey]
    consistency_level: ConsistencyLevel
    trace_id: str
    def __init__(self, edges: _Optional[_Iterable[_Union[EdgeKey, _Mapping]]] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class RemoveEdgesResponse(_message.Message):
    __slots__ = ("success", "edge_count")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    EDGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    success: bool
    edge_count: int
    def __init__(self, success: _Optional[bool] = ..., edge_count: _Optional[int] = ...) -> None: ...

class TraverseRequest(_message.Message):
    __slots__ = ("start_ids", "max_hops", "direction", "relations", "min_weight", "max_nodes", "consistency_level", "include_entity", "trace_id", "max_fan_out", "max_edges", "allow_partial", "where", "routing_key")
    START_IDS_FIELD_NUMBER: _ClassVar[int]
    MAX_HOPS_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    RELATIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ENTITY_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_FAN_OUT_FIELD_NUMBER: _ClassVar[int]
    MAX_EDGES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    ROUTING_KEY_FIELD_NUMBER: _ClassVar[int]
    start_ids: _containers.RepeatedScalarFieldContainer[str]
    max_hops: int
    direction: Direction
    relations: _containers.RepeatedScalarFieldContainer[str]
    min_weight: float
    max_nodes: int
    consistency_level: ConsistencyLevel
    include_entity: bool
    trace_id: str
    max_fan_out: int
    max_edges: int
    allow_partial: bool
    where: FilterExpression
    routing_key: str
    def __init__(self, start_ids: _Optional[_Iterable[str]] = ..., max_hops: _Optional[int] = ..., direction: _Optional[_Union[Direction, str]] = ..., relations: _Optional[_Iterable[str]] = ..., min_weight: _Optional[float] = ..., max_nodes: _Optional[int] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ..., include_entity: _Optional[bool] = ..., trace_id: _Optional[str] = ..., max_fan_out: _Optional[int] = ..., max_edges: _Optional[int] = ..., allow_partial: _Optional[bool] = ..., where: _Optional[_Union[FilterExpression, _Mapping]] = ..., routing_key: _Optional[str] = ...) -> None: ...

class TraversedNode(_message.Message):
    __slots__ = ("entity_id", "depth", "path", "entity")
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    depth: int
    path: GraphPath
    entity: Entity
    def __init__(self, entity_id: _Optional[str] = ..., depth: _Optional[int] = ..., path: _Optional[_Union[GraphPath, _Mapping]] = ..., entity: _Optional[_Union[Entity, _Mapping]] = ...) -> None: ...

class TraverseResponse(_message.Message):
    __slots__ = ("nodes", "truncated", "coverage")
    NODES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[TraversedNode]
    truncated: bool
    coverage: Coverage
    def __init__(self, nodes: _Optional[_Iterable[_Union[TraversedNode, _Mapping]]] = ..., truncated: _Optional[bool] = ..., coverage: _Optional[_Union[Coverage, _Mapping]] = ...) -> None: ...

class BulkPutEntitiesRequest(_message.Message):
    __slots__ = ("entities", "consistency_level", "trace_id")
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    entities: _containers.RepeatedCompositeFieldContainer[Entity]
    consistency_level: ConsistencyLevel
    trace_id: str
    def __init__(self, entities: _Optional[_Iterable[_Union[Entity, _Mapping]]] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class BulkPutFailure(_message.Message):
    __slots__ = ("entity_id", "error_message")
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    error_message: str
    def __init__(self, entity_id: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class BulkPutEntitiesResponse(_message.Message):
    __slots__ = ("success_count", "failure_count", "failures")
    SUCCESS_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    success_count: int
    failure_count: int
    failures: _containers.RepeatedCompositeFieldContainer[BulkPutFailure]
    def __init__(self, success_count: _Optional[int] = ..., failure_count: _Optional[int] = ..., failures: _Optional[_Iterable[_Union[BulkPutFailure, _Mapping]]] = ...) -> None: ...

class CheckpointRequest(_message.Message):
    __slots__ = ("target_dir",)
    TARGET_DIR_FIELD_NUMBER: _ClassVar[int]
    target_dir: str
    def __init__(self, target_dir: _Optional[str] = ...) -> None: ...

class CheckpointResponse(_message.Message):
    __slots__ = ("target_dir", "covered_seq", "index_covered_seq", "index_tenants", "tables_linked", "tables_copied", "table_bytes", "wal_segments", "wal_bytes")
    TARGET_DIR_FIELD_NUMBER: _ClassVar[int]
    COVERED_SEQ_FIELD_NUMBER: _ClassVar[int]
    INDEX_COVERED_SEQ_FIELD_NUMBER: _ClassVar[int]
    INDEX_TENANTS_FIELD_NUMBER: _ClassVar[int]
    TABLES_LINKED_FIELD_NUMBER: _ClassVar[int]
    TABLES_COPIED_FIELD_NUMBER: _ClassVar[int]
    TABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    WAL_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    WAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    target_dir: str
    covered_seq: int
    index_covered_seq: int
    index_tenants: int
    tables_linked: int
    tables_copied: int
    table_bytes: int
    wal_segments: int
    wal_bytes: int
    def __init__(self, target_dir: _Optional[str] = ..., covered_seq: _Optional[int] = ..., index_covered_seq: _Optional[int] = ..., index_tenants: _Optional[int] = ..., tables_linked: _Optional[int] = ..., tables_copied: _Optional[int] = ..., table_bytes: _Optional[int] = ..., wal_segments: _Optional[int] = ..., wal_bytes: _Optional[int] = ...) -> None: ...

class CompactRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CompactResponse(_message.Message):
    __slots__ = ("tables_before", "table_bytes_before", "tables_after", "table_bytes_after", "duration_ms")
    TABLES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    TABLE_BYTES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    TABLES_AFTER_FIELD_NUMBER: _ClassVar[int]
    TABLE_BYTES_AFTER_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    tables_before: int
    table_bytes_before: int
    tables_after: int
    table_bytes_after: int
    duration_ms: int
    def __init__(self, tables_before: _Optional[int] = ..., table_bytes_before: _Optional[int] = ..., tables_after: _Optional[int] = ..., table_bytes_after: _Optional[int] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class QueryVector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class QueryBatchRequest(_message.Message):
    __slots__ = ("options", "vectors", "texts")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    options: QueryRequest
    vectors: _containers.RepeatedCompositeFieldContainer[QueryVector]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, options: _Optional[_Union[QueryRequest, _Mapping]] = ..., vectors: _Optional[_Iterable[_Union[QueryVector, _Mapping]]] = ..., texts: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryBatchResponse(_message.Message):
    __slots__ = ("replies", "trace_id")
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[QueryResponse]
    trace_id: str
    def __init__(self, replies: _Optional[_Iterable[_Union[QueryResponse, _Mapping]]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class ListTenantsRequest(_message.Message):
    __slots__ = ("per_node",)
    PER_NODE_FIELD_NUMBER: _ClassVar[int]
    per_node: bool
    def __init__(self, per_node: _Optional[bool] = ...) -> None: ...

class TenantStats(_message.Message):
    __slots__ = ("tenant_id", "entities", "vectors", "dimension", "metric", "bytes")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    entities: int
    vectors: int
    dimension: int
    metric: str
    bytes: int
    def __init__(self, tenant_id: _Optional[str] = ..., entities: _Optional[int] = ..., vectors: _Optional[int] = ..., dimension: _Optional[int] = ..., metric: _Optional[str] = ..., bytes: _Optional[int] = ...) -> None: ...

class ListTenantsResponse(_message.Message):
    __slots__ = ("tenants", "nodes")
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[TenantStats]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeTenantStats]
    def __init__(self, tenants: _Optional[_Iterable[_Union[TenantStats, _Mapping]]] = ..., nodes: _Optional[_Iterable[_Union[NodeTenantStats, _Mapping]]] = ...) -> None: ...

class NodeTenantStats(_message.Message):
    __slots__ = ("node", "tenants", "error")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    node: str
    tenants: _containers.RepeatedCompositeFieldContainer[TenantStats]
    error: str
    def __init__(self, node: _Optional[str] = ..., tenants: _Optional[_Iterable[_Union[TenantStats, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class GetTenantStatsRequest(_message.Message):
    __slots__ = ("tenant_id", "per_node")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PER_NODE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    per_node: bool
    def __init__(self, tenant_id: _Optional[str] = ..., per_node: _Optional[bool] = ...) -> None: ...

class GetTenantStatsResponse(_message.Message):
    __slots__ = ("stats", "nodes")
    STATS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    stats: TenantStats
    nodes: _containers.RepeatedCompositeFieldContainer[NodeTenantStats]
    def __init__(self, stats: _Optional[_Union[TenantStats, _Mapping]] = ..., nodes: _Optional[_Iterable[_Union[NodeTenantStats, _Mapping]]] = ...) -> None: ...

class DropTenantRequest(_message.Message):
    __slots__ = ("tenant_id", "confirm", "consistency_level")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    confirm: bool
    consistency_level: ConsistencyLevel
    def __init__(self, tenant_id: _Optional[str] = ..., confirm: _Optional[bool] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ...) -> None: ...

class DropTenantResponse(_message.Message):
    __slots__ = ("dropped_at_micros", "entities", "vectors")
    DROPPED_AT_MICROS_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    dropped_at_micros: int
    entities: int
    vectors: int
    def __init__(self, dropped_at_micros: _Optional[int] = ..., entities: _Optional[int] = ..., vectors: _Optional[int] = ...) -> None: ...

class RepairRequest(_message.Message):
    __slots__ = ("tenant_id", "preview", "ranges")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    preview: bool
    ranges: _containers.RepeatedCompositeFieldContainer[TokenRange]
    def __init__(self, tenant_id: _Optional[str] = ..., preview: _Optional[bool] = ..., ranges: _Optional[_Iterable[_Union[TokenRange, _Mapping]]] = ...) -> None: ...

class TokenRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class RebuildRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class RebuildResponse(_message.Message):
    __slots__ = ("session_id", "resumed", "ranges", "partitions", "cells", "bytes", "unfinished", "duration_ms", "complete")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    UNFINISHED_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    resumed: bool
    ranges: int
    partitions: int
    cells: int
    bytes: int
    unfinished: _containers.RepeatedScalarFieldContainer[str]
    duration_ms: int
    complete: bool
    def __init__(self, session_id: _Optional[str] = ..., resumed: _Optional[bool] = ..., ranges: _Optional[int] = ..., partitions: _Optional[int] = ..., cells: _Optional[int] = ..., bytes: _Optional[int] = ..., unfinished: _Optional[_Iterable[str]] = ..., duration_ms: _Optional[int] = ..., complete: _Optional[bool] = ...) -> None: ...

class RepairResponse(_message.Message):
    __slots__ = ("ranges", "ranges_differing", "leaves_differing", "partitions_differing", "partitions_repaired", "cells_streamed", "bytes_streamed", "drops_sent", "skipped", "failures", "duration_ms", "complete")
    RANGES_FIELD_NUMBER: _ClassVar[int]
    RANGES_DIFFERING_FIELD_NUMBER: _ClassVar[int]
    LEAVES_DIFFERING_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_DIFFERING_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_REPAIRED_FIELD_NUMBER: _ClassVar[int]
    CELLS_STREAMED_FIELD_NUMBER: _ClassVar[int]
    BYTES_STREAMED_FIELD_NUMBER: _ClassVar[int]
    DROPS_SENT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    ranges: int
    ranges_differing: int
    leaves_differing: int
    partitions_differing: int
    partitions_repaired: int
    cells_streamed: int
    bytes_streamed: int
    drops_sent: int
    skipped: _containers.RepeatedScalarFieldContainer[str]
    failures: _containers.RepeatedScalarFieldContainer[str]
    duration_ms: int
    complete: bool
    def __init__(self, ranges: _Optional[int] = ..., ranges_differing: _Optional[int] = ..., leaves_differing: _Optional[int] = ..., partitions_differing: _Optional[int] = ..., partitions_repaired: _Optional[int] = ..., cells_streamed: _Optional[int] = ..., bytes_streamed: _Optional[int] = ..., drops_sent: _Optional[int] = ..., skipped: _Optional[_Iterable[str]] = ..., failures: _Optional[_Iterable[str]] = ..., duration_ms: _Optional[int] = ..., complete: _Optional[bool] = ...) -> None: ...

class DecommissionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RemoveNodeRequest(_message.Message):
    __slots__ = ("host_id", "ignore_dead")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    IGNORE_DEAD_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    ignore_dead: bool
    def __init__(self, host_id: _Optional[str] = ..., ignore_dead: _Optional[bool] = ...) -> None: ...

class CleanupRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CleanupResponse(_message.Message):
    __slots__ = ("topology_version", "ranges_kept", "partitions_dropped", "cells_dropped", "bytes_dropped", "tables_rewritten", "table_bytes_before", "table_bytes_after", "duration_ms")
    TOPOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RANGES_KEPT_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    CELLS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    BYTES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    TABLES_REWRITTEN_FIELD_NUMBER: _ClassVar[int]
    TABLE_BYTES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    TABLE_BYTES_AFTER_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    topology_version: int
    ranges_kept: int
    partitions_dropped: int
    cells_dropped: int
    bytes_dropped: int
    tables_rewritten: int
    table_bytes_before: int
    table_bytes_after: int
    duration_ms: int
    def __init__(self, topology_version: _Optional[int] = ..., ranges_kept: _Optional[int] = ..., partitions_dropped: _Optional[int] = ..., cells_dropped: _Optional[int] = ..., bytes_dropped: _Optional[int] = ..., tables_rewritten: _Optional[int] = ..., table_bytes_before: _Optional[int] = ..., table_bytes_after: _Optional[int] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class TopologyChangeResponse(_message.Message):
    __slots__ = ("host_id", "finished", "topology_version")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    finished: bool
    topology_version: int
    def __init__(self, host_id: _Optional[str] = ..., finished: _Optional[bool] = ..., topology_version: _Optional[int] = ...) -> None: ...

class DeleteBySourceRequest(_message.Message):
    __slots__ = ("source_id", "consistency_level", "trace_id")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    consistency_level: ConsistencyLevel
    trace_id: str
    def __init__(self, source_id: _Optional[str] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class DeleteBySourceResponse(_message.Message):
    __slots__ = ("deleted", "updated")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    updated: int
    def __init__(self, deleted: _Optional[int] = ..., updated: _Optional[int] = ...) -> None: ...

class ReplaceSourceRequest(_message.Message):
    __slots__ = ("source_id", "entities", "consistency_level", "trace_id")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    entities: _containers.RepeatedCompositeFieldContainer[Entity]
    consistency_level: ConsistencyLevel
    trace_id: str
    def __init__(self, source_id: _Optional[str] = ..., entities: _Optional[_Iterable[_Union[Entity, _Mapping]]] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class ReplaceSourceResponse(_message.Message):
    __slots__ = ("deleted", "updated", "written")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    updated: int
    written: int
    def __init__(self, deleted: _Optional[int] = ..., updated: _Optional[int] = ..., written: _Optional[int] = ...) -> None: ...

class DeleteByFilterRequest(_message.Message):
    __slots__ = ("filter", "where", "dry_run", "max_deletes", "confirm", "consistency_level", "trace_id")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    MAX_DELETES_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    filter: QueryFilter
    where: FilterExpression
    dry_run: bool
    max_deletes: int
    confirm: bool
    consistency_level: ConsistencyLevel
    trace_id: str
    def __init__(self, filter: _Optional[_Union[QueryFilter, _Mapping]] = ..., where: _Optional[_Union[FilterExpression, _Mapping]] = ..., dry_run: _Optional[bool] = ..., max_deletes: _Optional[int] = ..., confirm: _Optional[bool] = ..., consistency_level: _Optional[_Union[ConsistencyLevel, str]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class DeleteByFilterResponse(_message.Message):
    __slots__ = ("matched", "deleted", "more")
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    matched: int
    deleted: int
    more: bool
    def __init__(self, matched: _Optional[int] = ..., deleted: _Optional[int] = ..., more: _Optional[bool] = ...) -> None: ...
