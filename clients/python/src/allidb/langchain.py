"""A LangChain vector store on AlliDB (``pip install 'allidb[langchain]'``).

Each text becomes one entity: its id (the document id, or a new UUID), the embedding of the
text, entity type ``entity_type`` (default ``"document"``), the text as the chunk ``text``, and
the metadata both as entity attributes (strings as attributes; booleans, numbers and lists of
strings as typed attributes) and, exactly, as JSON in the chunk's metadata (so metadata
round-trips with its types). A string ``metadata["source"]`` (what LangChain's document loaders
set: the file or URL) also becomes the entity's source id, so ``store.delete(source=...)``
removes every document loaded from it (AlliDB's ``DeleteBySource``). ``filter`` takes LangChain's filter language (``{"source":
"faq"}``, ``{"year": {"$gte": 2021}}``, ``$eq $ne $gt $gte $lt $lte $in $nin $exists $contain
$like $and $or $not``; see :mod:`allidb.filters`); an operator it cannot apply raises
``ValueError`` instead of matching nothing. Search is AlliDB's query: with ``hops`` the graph expansion adds
the neighbours of the nearest documents along edges (``relations``, ``direction``), each with
the path that reached it in ``metadata["_allidb_path"]``.

Hybrid search: ``search_type="hybrid"`` (per call, or the store's default ``search_type``)
searches the query's embedding *and* its words (BM25 over the stored texts), fused by
``fusion`` (``"rrf"``, the default, or ``"dbsf"``) with ``lexical_weight`` (default 0.5);
``search_type="text"`` searches the words alone (no embedding call); ``"similarity"`` (the
default) the embedding alone. Package names, error codes and rare identifiers that embeddings
miss are found by their words.

>>> from allidb.langchain import AlliDBVectorStore
>>> store = AlliDBVectorStore(allidb.Client("127.0.0.1:7000"), embeddings)
>>> store.add_texts(["Paris is the capital of France."], metadatas=[{"source": "wiki"}])
>>> store.similarity_search_with_score("capital of France", k=3, hops=1)
>>> store.similarity_search("ERR_SSL_PROTOCOL_ERROR", k=3, search_type="hybrid")
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Type

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from .client import Client
from .filters import where
from .types import Chunk, Entity, QueryResult

__all__ = ["AlliDBVectorStore"]

#: Chunk id of the document's text, and chunk-metadata key of its JSON metadata.
TEXT_CHUNK_ID = "text"
METADATA_JSON_KEY = "langchain_metadata"
#: Metadata key whose string value is also the entity's source id.
SOURCE_KEY = "source"
#: Metadata keys the store adds to search results.
PATH_KEY = "_allidb_path"
HOPS_KEY = "_allidb_hops"

_SEARCH_OPTIONS = (
    "hops",
    "relations",
    "direction",
    "entity_types",
    "weights",
    "ef",
    "seeds",
    "min_weight",
    "hop_decay",
    "max_nodes",
    "max_fan_out",
    "max_edges",
    "expand_factor",
    "scoring",
    "pagerank",
    "consistency",
    "trace_id",
    "fusion",
    "lexical_weight",
    "rank_constant",
)

#: What ``search_type`` may be: the embedding alone, embedding and words fused, words alone.
SEARCH_TYPES = ("similarity", "hybrid", "text")


class AlliDBVectorStore(VectorStore):
    """LangChain ``VectorStore`` backed by an AlliDB tenant.

    Args:
        client: a connected :class:`allidb.Client` (its API key decides the tenant).
        embedding: the LangChain ``Embeddings`` that embeds texts and queries.
        entity_type: the type given to the store's entities; searches return only this type
            (None: search every entity of the tenant).
        batch_size: entities per write request in :meth:`add_texts`.
        default_hops: graph expansion depth of searches that do not pass ``hops``
            (0 = nearest neighbours only; None = the server's ``query.max_hops``).
        search_type: how :meth:`similarity_search` and its variants search a query string
            when the call does not say: ``"similarity"`` (the embedding), ``"hybrid"`` (the
            embedding and the words, fused) or ``"text"`` (the words, BM25).
    """

    def __init__(
        self,
        client: Client,
        embedding: Embeddings,
        *,
        entity_type: Optional[str] = "document",
        batch_size: int = 256,
        default_hops: Optional[int] = 0,
        search_type: str = "similarity",
    ) -> None:
        if search_type not in SEARCH_TYPES:
            raise ValueError(f"search_type must be one of {SEARCH_TYPES}; got {search_type!r}")
        self.search_type = search_type
        self.client = client
        self._embedding = embedding
        self.entity_type = entity_type
        self.batch_size = batch_size
        self.default_hops = default_hops

    @property
    def embeddings(self) -> Embeddings:
        """The embeddings object the store embeds with."""
        return self._embedding

    # ---- writing -----------------------------------------------------------------------

    def _entity(
        self, entity_id: str, text: str, vector: Sequence[float], metadata: dict, ttl_secs: int
    ) -> Entity:
        attributes = {str(key): value for key, value in metadata.items() if isinstance(value, str)}
        typed = {str(key): value for key, value in metadata.items() if _typed(value)}
        chunk_metadata = {METADATA_JSON_KEY: json.dumps(metadata, sort_keys=True, default=str)}
        source = metadata.get(SOURCE_KEY)
        return Entity(
            id=entity_id,
            vector=list(vector),
            type=self.entity_type or "",
            attributes=attributes,
            typed_attributes=typed,
            chunks=[Chunk(TEXT_CHUNK_ID, text, chunk_metadata)],
            source_ids=[source] if isinstance(source, str) and source else [],
            ttl_secs=ttl_secs,
        )

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[str]] = None,
        **kwargs: Any,
    ) -> List[str]:
        """Embeds the texts and writes one entity per text (replacing any with the same id).

        Returns the ids (given, or new UUIDs). ``ttl_secs=N`` makes the documents expire N
        seconds after the write (session memories, caches; docs/python.md "Expiry"). Extra
        keyword arguments go to :meth:`allidb.Client.put_many` (``consistency``,
        ``progress``, ``concurrency``).
        """
        text_list = list(texts)
        if metadatas is not None and len(metadatas) != len(text_list):
            raise ValueError(f"{len(metadatas)} metadatas for {len(text_list)} texts")
        if ids is not None and len(ids) != len(text_list):
            raise ValueError(f"{len(ids)} ids for {len(text_list)} texts")
        if not text_list:
            return []
        out_ids = [
            (ids[i] if ids is not None and ids[i] else uuid.uuid4().hex) for i in range(len(text_list))
        ]
        vectors = self._embedding.embed_documents(text_list)
        ttl_secs = int(kwargs.get("ttl_secs") or 0)
        entities = [
            self._entity(
                out_ids[i],
                text_list[i],
                vectors[i],
                (metadatas[i] if metadatas else None) or {},
                ttl_secs,
            )
            for i in range(len(text_list))
        ]
        put_options = {k: kwargs[k] for k in ("consistency", "progress", "concurrency") if k in kwargs}
        self.client.put_many(entities, batch_size=self.batch_size, **put_options)
        return out_ids

    def delete(
        self,
        ids: Optional[List[str]] = None,
        *,
        source: Optional[str] = None,
        filter: Optional[dict] = None,
        **kwargs: Any,
    ) -> Optional[bool]:
        """Deletes the entities with these ids (True when every one existed); with ``source=``
        every document whose ``metadata["source"]`` was that value (``DeleteBySource``); with
        ``filter=`` (a metadata filter dict, as in search) every document of this store that
        matches it (``DeleteByFilter``, in calls of ``max_deletes`` until none is left; a
        filter matching the whole tenant needs ``confirm=True``). The last two return True
        when something was deleted. Exactly one of the three; none is refused."""
        consistency = kwargs.get("consistency")
        given = [name for name, value in (("ids", ids), ("source", source), ("filter", filter)) if value is not None]
        if len(given) != 1:
            raise ValueError(f"AlliDBVectorStore.delete takes one of ids, source, filter; got {given or 'none'}")
        if source is not None:
            done = self.client.delete_by_source(source, consistency=consistency)
            return done.deleted + done.updated > 0
        if filter is not None:
            deleted = 0
            while True:
                result = self.client.delete_by_filter(
                    where(filter),
                    entity_types=[self.entity_type] if self.entity_type else None,
                    max_deletes=kwargs.get("max_deletes"),
                    confirm=bool(kwargs.get("confirm", False)),
                    consistency=consistency,
                )
                deleted += result.deleted
                if not result.more:
                    return deleted > 0
        found = [self.client.delete(entity_id, consistency=consistency) for entity_id in ids or []]
        return all(found)

    def get_by_ids(self, ids: Sequence[str], /) -> List[Document]:
        """The documents with these ids (missing ids are skipped), in the order given."""
        got = self.client.get_many(list(ids))
        return [_document(entity) for entity in got.entities]

    # ---- searching ---------------------------------------------------------------------

    def _query(
        self,
        vector: Optional[Sequence[float]],
        k: int,
        filter: Optional[dict],
        kwargs: dict,
        text: Optional[str] = None,
    ) -> List[QueryResult]:
        unknown = set(kwargs) - set(_SEARCH_OPTIONS) - {"explain"}
        if unknown:
            raise TypeError(f"unknown search options: {sorted(unknown)}")
        options = {key: kwargs[key] for key in _SEARCH_OPTIONS if key in kwargs}
        options.setdefault("hops", self.default_hops)
        if self.entity_type and "entity_types" not in options:
            options["entity_types"] = [self.entity_type]
        if filter:
            options["where"] = where(filter)
        response = self.client.query(vector, text=text, k=k, explain=True, **options)
        return response.results

    def _search_text(
        self, query: str, k: int, filter: Optional[dict], kwargs: dict
    ) -> List[QueryResult]:
        """Searches a query string the way ``search_type`` (in ``kwargs``, else the store's)
        says."""
        search_type = kwargs.pop("search_type", self.search_type)
        if search_type not in SEARCH_TYPES:
            raise ValueError(f"search_type must be one of {SEARCH_TYPES}; got {search_type!r}")
        if search_type == "text":
            return self._query(None, k, filter, kwargs, text=query)
        vector = self._embedding.embed_query(query)
        if search_type == "hybrid":
            return self._query(vector, k, filter, kwargs, text=query)
        return self._query(vector, k, filter, kwargs)

    def similarity_search_with_score_by_vector(
        self, embedding: List[float], k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        """Documents nearest to ``embedding`` (plus their graph neighbours with ``hops``), with
        AlliDB's unified score (higher is better). Options: ``filter`` (LangChain's filter
        language, see :mod:`allidb.filters`),
        ``hops``, ``relations``, ``direction``, ``weights``, ``ef``, ``seeds``, ``min_weight``,
        ``hop_decay``, ``max_nodes``, ``max_fan_out``, ``scoring``, ``pagerank``,
        ``consistency``."""
        results = self._query(embedding, k, filter, kwargs)
        return [(_document(r.entity, r), r.score) for r in results if r.entity is not None]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        """Embeds ``query`` and searches (see :meth:`similarity_search_with_score_by_vector`);
        ``search_type="hybrid"`` also searches its words (BM25) and fuses both lists
        (``fusion``, ``lexical_weight``), ``search_type="text"`` searches its words alone."""
        results = self._search_text(query, k, filter, dict(kwargs))
        return [(_document(r.entity, r), r.score) for r in results if r.entity is not None]

    def similarity_search(
        self, query: str, k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Document]:
        """The documents of :meth:`similarity_search_with_score`, best first."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_by_vector(
        self, embedding: List[float], k: int = 4, filter: Optional[dict] = None, **kwargs: Any
    ) -> List[Document]:
        """The documents of :meth:`similarity_search_with_score_by_vector`, best first."""
        return [
            doc
            for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)
        ]

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> List[Tuple[Document, float]]:
        """Relevance in [0, 1]: the relevance term of each result (divided by the vector weight
        when one is given): ``(cos + 1) / 2`` for the default cosine metric, or with
        ``search_type="hybrid"``/``"text"`` the fused relevance (vector and lexical parts)."""
        filter = kwargs.pop("filter", None)
        weight = 1.0
        weights = kwargs.get("weights")
        if isinstance(weights, dict) and weights.get("vector"):
            weight = float(weights["vector"])
        elif weights is not None and getattr(weights, "vector", None):
            weight = float(weights.vector)
        results = self._search_text(query, k, filter, dict(kwargs))
        out = []
        for r in results:
            if r.entity is None:
                continue
            components = r.components
            relevance = (
                (components.vector + components.lexical) / weight if components is not None else 0.0
            )
            out.append((_document(r.entity, r), relevance))
        return out

    @classmethod
    def from_texts(
        cls: Type["AlliDBVectorStore"],
        texts: List[str],
        embedding: Embeddings,
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[str]] = None,
        client: Optional[Client] = None,
        addr: str = "127.0.0.1:7000",
        api_key: Optional[str] = None,
        **kwargs: Any,
    ) -> "AlliDBVectorStore":
        """A store on ``client`` (or a new :class:`allidb.Client` to ``addr`` with
        ``api_key``) holding ``texts``. Other keyword arguments go to the constructor."""
        if client is None:
            client = Client(addr, api_key=api_key)
        store = cls(client, embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store


def _typed(value: Any) -> bool:
    """True for metadata stored as a typed attribute: booleans, integers, finite floats and
    lists of strings."""
    if isinstance(value, (bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _document(entity: Entity, result: Optional[QueryResult] = None) -> Document:
    """A LangChain document from an entity: the ``text`` chunk (else every chunk's text) and
    the JSON metadata (else the attributes); search results add their path and hops."""
    text_chunk = next((c for c in entity.chunks if c.id == TEXT_CHUNK_ID), None)
    if text_chunk is not None:
        text = text_chunk.text
        raw = text_chunk.metadata.get(METADATA_JSON_KEY)
        metadata = json.loads(raw) if raw else dict(entity.attributes)
    else:
        text = entity.text
        metadata = dict(entity.attributes)
    if result is not None and result.path is not None:
        metadata[PATH_KEY] = list(result.path.entity_ids)
        metadata[HOPS_KEY] = result.path.hops
    return Document(page_content=text, metadata=metadata, id=entity.id)
