"""AlliDB's Python client: entities with vector embeddings, graph edges and text chunks,
queried Graph-RAG style, over gRPC.

>>> import allidb
>>> with allidb.Client("127.0.0.1:7000") as db:
...     db.put(allidb.Entity("paris", vector=[0.9, 0.1, 0.0], type="city"))
...     for result in db.query([1.0, 0.0, 0.0], k=2):
...         print(result.id, result.score)

:class:`Client` is synchronous, :class:`AsyncClient` the same over ``grpc.aio``. Results are
the dataclasses of :mod:`allidb.types`; failures raise the exceptions of
:mod:`allidb.errors` (one per gRPC status code, carrying the server's message). The LangChain
vector store is :class:`allidb.langchain.AlliDBVectorStore` (extra ``allidb[langchain]``).
"""

from .aio import AsyncClient
from .client import Client
from .errors import (
    Aborted,
    AlliDBError,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    PutManyError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
from .types import (
    Chunk,
    ContextNode,
    DeleteByFilterResult,
    Edge,
    Embedding,
    Entity,
    FilterPlan,
    GetManyResult,
    Health,
    PageRank,
    PageRankOptions,
    Path,
    PutFailure,
    PutManyResult,
    QueryContext,
    QueryResponse,
    QueryResult,
    ScanPage,
    ScoreComponents,
    SourceDeleted,
    LexicalMatch,
    TraversedNode,
    TraverseResult,
    Weights,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "AsyncClient",
    "Entity",
    "Embedding",
    "Edge",
    "Chunk",
    "Path",
    "ScoreComponents",
    "LexicalMatch",
    "PageRank",
    "QueryResult",
    "QueryResponse",
    "QueryContext",
    "FilterPlan",
    "ContextNode",
    "TraversedNode",
    "TraverseResult",
    "GetManyResult",
    "PutFailure",
    "PutManyResult",
    "ScanPage",
    "SourceDeleted",
    "DeleteByFilterResult",
    "Health",
    "Weights",
    "PageRankOptions",
    "AlliDBError",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
    "PutManyError",
    "__version__",
]
