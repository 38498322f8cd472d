"""The LangChain vector store against a real daemon, with a deterministic test embedding."""

from __future__ import annotations

import hashlib
import math
from typing import List

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

import allidb
from allidb import Edge
from allidb.langchain import AlliDBVectorStore

from conftest import Tenant


class WordHashEmbeddings(Embeddings):
    """Test double of an embedding model: a normalised bag of words, each word hashed (SHA-1,
    so stable across runs) into one of 64 dimensions. Texts sharing words are close."""

    dim = 64

    def _embed(self, text: str) -> List[float]:
        vector = [0.0] * self.dim
        for word in text.lower().replace(".", " ").replace("?", " ").split():
            slot = int(hashlib.sha1(word.encode()).hexdigest(), 16) % self.dim
            vector[slot] += 1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    def embed_documents(self, texts: List[str]) -> List[List[float]]:
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> List[float]:
        return self._embed(text)


TEXTS = [
    "Paris is the capital of France",
    "Berlin is the capital of Germany",
    "The Eiffel tower stands in Paris",
    "Bananas are yellow fruit",
]
METADATAS = [
    {"source": "wiki", "year": 2020, "tags": ["city", "fr"]},
    {"source": "wiki", "year": 2021, "tags": ["city", "de"]},
    {"source": "blog", "year": 2022, "tags": ["landmark"]},
    {"source": "blog", "year": 2023, "verified": True},
]


@pytest.fixture
def store(tenant: Tenant) -> AlliDBVectorStore:
    return AlliDBVectorStore(tenant.client(), WordHashEmbeddings())


def test_add_texts_and_search_with_scores(store: AlliDBVectorStore) -> None:
    ids = store.add_texts(TEXTS, METADATAS, ids=["paris", "berlin", "eiffel", "banana"])
    assert ids == ["paris", "berlin", "eiffel", "banana"]
    hits = store.similarity_search_with_score("capital of France", k=2)
    assert [doc.id for doc, _ in hits] == ["paris", "berlin"]
    assert hits[0][1] > hits[1][1]
    doc = hits[0][0]
    assert doc.page_content == "Paris is the capital of France"
    # Metadata round-trips with its types; the store adds the result's path.
    assert doc.metadata["source"] == "wiki" and doc.metadata["year"] == 2020
    assert doc.metadata["tags"] == ["city", "fr"]
    assert doc.metadata["_allidb_path"] == ["paris"] and doc.metadata["_allidb_hops"] == 0
    # Metadata values are entity attributes, so they filter.
    blog = store.similarity_search("Paris", k=4, filter={"source": "blog"})
    assert [d.id for d in blog] == ["eiffel", "banana"]
    assert [d.id for d in store.similarity_search("fruit", k=4, filter={"verified": True})] == ["banana"]
    entity = store.client.get("paris")
    assert entity.attributes == {"source": "wiki"} and entity.type == "document"
    assert entity.typed_attributes == {"year": 2020, "tags": ["city", "fr"]}
    by_vector = store.similarity_search_by_vector(WordHashEmbeddings().embed_query("yellow bananas"), k=1)
    assert [d.id for d in by_vector] == ["banana"]


def test_langchain_filter_dicts_map_to_where(store: AlliDBVectorStore) -> None:
    store.add_texts(TEXTS, METADATAS, ids=["paris", "berlin", "eiffel", "banana"])

    def ids(filter: dict) -> list:
        return sorted(d.id for d in store.similarity_search("capital", k=4, filter=filter))

    assert ids({"year": {"$lt": 2022}}) == ["berlin", "paris"]
    assert ids({"year": {"$gte": 2022}}) == ["banana", "eiffel"]
    assert ids({"year": {"$gt": 2020, "$lte": 2022}}) == ["berlin", "eiffel"]
    assert ids({"year": {"$eq": 2021}}) == ["berlin"]
    assert ids({"year": 2021.0}) == ["berlin"]
    assert ids({"source": {"$ne": "wiki"}}) == ["banana", "eiffel"]
    assert ids({"source": {"$in": ["blog", "news"]}}) == ["banana", "eiffel"]
    assert ids({"year": {"$nin": [2020, 2021]}}) == ["banana", "eiffel"]
    assert ids({"verified": {"$exists": True}}) == ["banana"]
    assert ids({"verified": {"$exists": False}}) == ["berlin", "eiffel", "paris"]
    assert ids({"tags": {"$contain": "city"}}) == ["berlin", "paris"]
    assert ids({"$or": [{"year": 2020}, {"source": "blog"}]}) == ["banana", "eiffel", "paris"]
    assert ids({"$and": [{"source": "wiki"}, {"year": {"$gt": 2020}}]}) == ["berlin"]
    assert ids({"source": "wiki", "year": {"$gt": 2020}}) == ["berlin"]
    assert ids({"$not": {"source": "wiki"}}) == ["banana", "eiffel"]
    assert ids({"source": {"$like": "bl%"}}) == ["banana", "eiffel"]
    assert ids({"verified": True}) == ["banana"]
    # What cannot be applied raises instead of matching nothing.
    with pytest.raises(ValueError, match="unknown operator"):
        ids({"year": {"$between": [2020, 2022]}})
    with pytest.raises(ValueError, match="only prefix patterns"):
        ids({"source": {"$like": "%og"}})
    with pytest.raises(allidb.InvalidArgument, match=r"where\.gt\.source"):
        ids({"source": {"$gt": 3}})
    with pytest.raises(allidb.InvalidArgument, match="holds number values"):
        ids({"year": "2020"})


def test_relevance_scores_are_the_vector_similarity(store: AlliDBVectorStore) -> None:
    store.add_texts(TEXTS, ids=["paris", "berlin", "eiffel", "banana"])
    scored = store.similarity_search_with_relevance_scores("Paris is the capital of France", k=4)
    assert scored[0][0].id == "paris"
    assert scored[0][1] == pytest.approx(1.0, abs=1e-6)  # identical text: cosine 1
    assert all(0.0 <= s <= 1.0 for _, s in scored)
    assert [s for _, s in scored] == sorted((s for _, s in scored), reverse=True)


def test_add_documents_get_by_ids_delete(store: AlliDBVectorStore) -> None:
    docs = [Document(page_content=t, metadata=m, id=f"d{i}") for i, (t, m) in enumerate(zip(TEXTS, METADATAS))]
    assert store.add_documents(docs) == ["d0", "d1", "d2", "d3"]
    got = store.get_by_ids(["d2", "missing", "d0"])
    assert [d.id for d in got] == ["d2", "d0"]
    assert got[0].page_content == TEXTS[2] and got[0].metadata == METADATAS[2]
    generated = store.add_texts(["no id given"])
    assert len(generated) == 1 and len(generated[0]) == 32
    assert store.delete(["d1"]) is True
    assert store.delete(["d1"]) is False
    assert "d1" not in [d.id for d in store.similarity_search("capital of Germany", k=5)]
    with pytest.raises(ValueError):
        store.delete()
    # Delete by metadata["source"]: every document loaded from "blog" goes.
    assert store.delete(source="blog") is True
    assert store.get_by_ids(["d2", "d3", "d0"])[0].id == "d0"
    assert [d.id for d in store.get_by_ids(["d2", "d3"])] == []
    assert store.delete(source="blog") is False
    # Delete by a metadata filter.
    assert store.delete(filter={"year": {"$gte": 2020}}) is True
    assert store.get_by_ids(["d0"]) == []
    with pytest.raises(ValueError):
        store.delete(["d0"], source="wiki")


def test_add_texts_with_a_ttl_expire(store: AlliDBVectorStore) -> None:
    import time

    store.add_texts(["a session memory"], ids=["memory"], ttl_secs=1)
    store.add_texts(["a lasting fact"], ids=["fact"])
    assert [d.id for d in store.get_by_ids(["memory", "fact"])] == ["memory", "fact"]
    time.sleep(1.1)
    assert [d.id for d in store.get_by_ids(["memory", "fact"])] == ["fact"]


def test_graph_expansion_is_a_search_option(store: AlliDBVectorStore) -> None:
    store.add_texts(TEXTS, ids=["paris", "berlin", "eiffel", "banana"])
    # Link paris to banana, a text that shares no word with the question.
    store.client.add_edges([Edge("paris", "banana", "mentions")])
    plain = store.similarity_search("capital of France", k=1)
    assert [d.id for d in plain] == ["paris"]
    expanded = store.similarity_search_with_score("capital of France", k=5, hops=1, seeds=1)
    by_id = {doc.id: doc for doc, _ in expanded}
    assert set(by_id) == {"paris", "banana"}
    assert by_id["banana"].metadata["_allidb_path"] == ["paris", "banana"]
    assert by_id["banana"].metadata["_allidb_hops"] == 1
    assert by_id["banana"].page_content == TEXTS[3]
    # Only the named relations are followed.
    other = store.similarity_search("capital of France", k=5, hops=1, seeds=1, relations=["cites"])
    assert [d.id for d in other] == ["paris"]
    # The retriever passes the option through search_kwargs.
    retriever = store.as_retriever(search_kwargs={"k": 5, "hops": 1, "seeds": 1})
    assert {d.id for d in retriever.invoke("capital of France")} == {"paris", "banana"}
    with pytest.raises(TypeError, match="unknown search options"):
        store.similarity_search("x", k=1, hopz=1)


def test_from_texts_and_async_search(tenant: Tenant) -> None:
    import asyncio

    store = AlliDBVectorStore.from_texts(
        TEXTS, WordHashEmbeddings(), METADATAS, ids=["a", "b", "c", "d"],
        addr=tenant.daemon.grpc_addr, api_key=tenant.api_key,
    )
    try:
        assert [d.id for d in store.similarity_search("Eiffel tower", k=1)] == ["c"]
        docs = asyncio.run(store.asimilarity_search("Bananas yellow", k=1))
        assert [d.id for d in docs] == ["d"]
    finally:
        store.client.close()


def test_store_scopes_to_its_entity_type(tenant: Tenant) -> None:
    client = tenant.client()
    client.put(allidb.Entity("raw", vector=WordHashEmbeddings().embed_query("capital of France"), type="other"))
    store = AlliDBVectorStore(client, WordHashEmbeddings())
    store.add_texts(["capital of France"], ids=["doc"])
    assert [d.id for d in store.similarity_search("capital of France", k=5)] == ["doc"]
    everything = AlliDBVectorStore(client, WordHashEmbeddings(), entity_type=None)
    assert {d.id for d in everything.similarity_search("capital of France", k=5)} == {"doc", "raw"}


class BlindEmbeddings(WordHashEmbeddings):
    """An embedding that cannot tell texts apart by rare identifiers: every word outside a
    small common vocabulary maps to one shared slot (as a real model blurs package names)."""

    common = {"the", "a", "pad", "string", "json", "parser", "fast"}

    def _embed(self, text: str) -> List[float]:
        words = [w if w in self.common else "<rare>" for w in text.lower().split()]
        return super()._embed(" ".join(words))


IDENTIFIER_TEXTS = [
    "left-pad: string pad",
    "right-pad: string pad",
    "json-parse-fast: fast json parser",
    "zz-top-secret: the string pad",
]


def test_hybrid_search_finds_identifiers_the_embedding_misses(tenant: Tenant) -> None:
    store = AlliDBVectorStore(tenant.client(), BlindEmbeddings())
    store.add_texts(IDENTIFIER_TEXTS, ids=["a", "b", "c", "d"])
    # The embedding alone cannot put "zz-top-secret" first (its words all look alike).
    hybrid = store.similarity_search("zz-top-secret", k=2, search_type="hybrid")
    assert hybrid[0].page_content == "zz-top-secret: the string pad"
    text = store.similarity_search_with_score("left-pad", k=4, search_type="text")
    assert [d.page_content for d, _ in text][0] == "left-pad: string pad"
    # Only documents holding a query word come back from a text search.
    assert all("pad" in d.page_content for d, _ in text)
    relevance = store.similarity_search_with_relevance_scores(
        "json-parse-fast", k=1, search_type="hybrid", fusion="dbsf", lexical_weight=0.7
    )
    assert relevance[0][0].page_content.startswith("json-parse-fast")
    assert 0.0 < relevance[0][1] <= 1.0
    default_hybrid = AlliDBVectorStore(tenant.client(), BlindEmbeddings(), search_type="hybrid")
    # left-pad and right-pad embed identically: RRF at equal weights ties them (first by
    # vector, second by words), a higher lexical weight puts the one named first.
    tied = default_hybrid.similarity_search("right-pad", k=2)
    assert {d.page_content.split(":")[0] for d in tied} == {"left-pad", "right-pad"}
    named = default_hybrid.similarity_search("right-pad", k=1, lexical_weight=0.7)
    assert named[0].page_content.startswith("right-pad")
    with pytest.raises(ValueError):
        store.similarity_search("x", search_type="mmr-ish")
    with pytest.raises(ValueError):
        AlliDBVectorStore(tenant.client(), BlindEmbeddings(), search_type="nope")


# LangChain's own filter examples, run unchanged (issue 37). The documents and the four filter
# dicts of LangChain's PGVector guide, "Filtering Support" (docs.langchain.com/oss/python/
# integrations/vectorstores/pgvector; the notebook examples/vectorstore.ipynb of
# github.com/langchain-ai/langchain-postgres), verbatim but for the ids, which are strings here.
PGVECTOR_GUIDE_DOCS = [
    Document(page_content='there are cats in the pond', metadata={"id": 1, "location": "pond", "topic": "animals"}),
    Document(page_content='ducks are also found in the pond', metadata={"id": 2, "location": "pond", "topic": "animals"}),
    Document(page_content='fresh apples are available at the market', metadata={"id": 3, "location": "market", "topic": "food"}),
    Document(page_content='the market also sells fresh oranges', metadata={"id": 4, "location": "market", "topic": "food"}),
    Document(page_content='the new art exhibit is fascinating', metadata={"id": 5, "location": "museum", "topic": "art"}),
    Document(page_content='a sculpture exhibit is also at the museum', metadata={"id": 6, "location": "museum", "topic": "art"}),
    Document(page_content='a new coffee shop opened on Main Street', metadata={"id": 7, "location": "Main Street", "topic": "food"}),
    Document(page_content='the book club meets at the library', metadata={"id": 8, "location": "library", "topic": "reading"}),
    Document(page_content='the library hosts a weekly story time for kids', metadata={"id": 9, "location": "library", "topic": "reading"}),
    Document(page_content='a cooking class for beginners is offered at the community center', metadata={"id": 10, "location": "community center", "topic": "classes"}),
]


def test_langchain_pgvector_guide_filters_run_unchanged(store: AlliDBVectorStore) -> None:
    store.add_documents(PGVECTOR_GUIDE_DOCS, ids=[str(doc.metadata['id']) for doc in PGVECTOR_GUIDE_DOCS])

    def ids(docs: List[Document]) -> List[int]:
        return sorted(doc.metadata["id"] for doc in docs)

    assert ids(store.similarity_search('kitty', k=10, filter={
        'id': {'$in': [1, 5, 2, 9]}
    })) == [1, 2, 5, 9]
    assert ids(store.similarity_search('ducks', k=10, filter={
        'id': {'$in': [1, 5, 2, 9]},
        'location': {'$in': ["pond", "market"]}
    })) == [1, 2]
    assert ids(store.similarity_search('ducks', k=10, filter={
        '$and': [
            {'id': {'$in': [1, 5, 2, 9]}},
            {'location': {'$in': ["pond", "market"]}},
        ]
    }
    )) == [1, 2]
    assert ids(store.similarity_search('bird', k=10, filter={
        'location': {"$ne": 'pond'}
    })) == [3, 4, 5, 6, 7, 8, 9, 10]


# Filter dicts of LangChain's shared metadata filtering cases, verbatim, for the operators
# the guide above does not show ($or, $not, $nin, $exists, $like, ranges), with their expected
# ids (github.com/langchain-ai/langchain-postgres, tests/unit_tests/fixtures/
# filtering_test_cases.py, TYPE_1 .. TYPE_6), over metadata holding the keys they name. Not
# run: range operators on strings (AlliDB compares strings for equality, `in` and prefix only:
# the server refuses them), `$between` and a `$like` that is not a prefix (the client raises
# ValueError naming them), and `$exists` on a key whose value is None (not stored as an
# attribute here, so it does not exist).
FILTERING_CASE_METADATA = [
    {"name": "adam", "date": "2021-01-01", "count": 1, "is_active": True, "tags": ["a", "b"],
     "id": 1, "height": 10.0, "happiness": 0.9, "sadness": 0.1},
    {"name": "bob", "date": "2021-01-02", "count": 2, "is_active": False, "tags": ["b", "c"],
     "id": 2, "height": 5.7, "happiness": 0.8, "sadness": 0.1},
    {"name": "jane", "date": "2021-01-01", "count": 3, "is_active": True, "tags": ["b", "d"],
     "id": 3, "height": 2.4, "happiness": None},
]
FILTERING_CASES = [
    ({"id": 1, "is_active": True}, [1]),
    ({"id": {"$ne": 1}}, [2, 3]),
    ({"id": {"$lt": 1}}, []),
    ({"height": {"$lte": 5.8}}, [2, 3]),
    ({"$or": [{"id": 1}, {"name": "bob"}]}, [1, 2]),
    ({"$and": [{"id": 1}, {"id": 2}]}, []),
    ({"$not": {"height": {"$gt": 5.0}}}, [3]),
    ({"$not": [{"is_active": True}]}, [2]),
    ({"name": {"$in": ["adam", "bob"]}}, [1, 2]),
    ({"id": {"$nin": [1, 2]}}, [3]),
    ({"name": {"$like": "a%"}}, [1]),
    ({"sadness": {"$exists": False}}, [3]),
    ({"sadness": {"$exists": True}}, [1, 2]),
]


def test_langchain_shared_filtering_cases_run_unchanged(store: AlliDBVectorStore) -> None:
    texts = ["id {id}".format(id=metadata["id"]) for metadata in FILTERING_CASE_METADATA]
    store.add_texts(texts, FILTERING_CASE_METADATA, ids=[str(m["id"]) for m in FILTERING_CASE_METADATA])
    for filter, expected in FILTERING_CASES:
        found = sorted(doc.metadata["id"] for doc in store.similarity_search("meow", k=4, filter=filter))
        assert found == expected, filter
    # What AlliDB does not apply is refused, never answered with nothing.
    with pytest.raises(ValueError, match="unknown operator"):
        store.similarity_search("meow", k=4, filter={"id": {"$between": (1, 2)}})
    with pytest.raises(ValueError, match="only prefix patterns"):
        store.similarity_search("meow", k=4, filter={"name": {"$like": "%a%"}})
    with pytest.raises(allidb.InvalidArgument, match=r"where\.gt\.name"):
        store.similarity_search("meow", k=4, filter={"name": {"$gt": "jane"}})
