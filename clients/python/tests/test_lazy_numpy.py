"""Lazy query replies and the numpy path (issue 36 point 3).

The laziness tests count the converters of ``allidb._convert`` (each wrapped to count its
calls): reading a reply's ids and scores must convert no result, entity or context, and each
part converts once, when it is first read. The numpy tests check that float32 vectors go out
and come back bit for bit, without Python floats on the way.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

import numpy as np
import pytest

import allidb
from allidb import Chunk, Edge, Entity, _convert
from allidb._proto import allidb_pb2 as pb

from conftest import Tenant

#: The converters a query reply may call, counted by the ``conversions`` fixture.
CONVERTERS = (
    "result_from_proto",
    "entity_from_proto",
    "_context_of",
    "_context_nodes",
    "_components_of",
    "_explained_path",
    "_node_path",
    "_node_chunks",
    "_edges_of",
    "_vector_of",
    "_embeddings_of",
)


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts the calls of each converter of CONVERTERS (by name)."""
    counts: Counter = Counter()
    for name in CONVERTERS:
        original = getattr(_convert, name)

        def counting(*args, _name=name, _original=original):
            counts[_name] += 1
            return _original(*args)

        monkeypatch.setattr(_convert, name, counting)
    return counts


def random_f32(rng: np.random.Generator, shape) -> np.ndarray:
    """float32 values with all mantissa bits used (not the float32 rounding of short decimals)."""
    return rng.standard_normal(shape).astype(np.float32)


def chain(dim: int = 8, n: int = 6, seed: int = 5):
    """Entities c0 -> c1 -> ... (relation ``next``), each with a chunk and a float32 vector."""
    rng = np.random.default_rng(seed)
    vectors = random_f32(rng, (n, dim))
    entities = [
        Entity(f"c{i}", vector=vectors[i], type="doc", attributes={"i": str(i)},
               chunks=[Chunk(f"t{i}", f"text {i}")],
               edges=[Edge.to(f"c{i + 1}", "next", 0.5)] if i + 1 < n else [])
        for i in range(n)
    ]
    return entities, vectors


QUESTION = dict(k=4, hops=2, seeds=2, relations=["next"], explain=True, include_context=True,
                context_chunks=True)


def check_lazy_reply(reply: allidb.QueryResponse, conversions: Counter) -> None:
    """What each read of a Graph-RAG reply (entities, explain, context) converts."""
    # ids, scores, len and trace id: read from the reply, nothing converted.
    assert len(reply) == 4
    assert reply.ids[0] == "c0"
    assert reply.scores == sorted(reply.scores, reverse=True) and len(reply.scores) == 4
    assert reply.trace_id == "lazy-1"
    assert sum(conversions.values()) == 0, conversions
    # The results: each built once, without its entity or explanation.
    results = reply.results
    assert [r.id for r in results] == reply.ids
    assert [r.score for r in results] == reply.scores
    assert conversions["result_from_proto"] == 4
    assert conversions["entity_from_proto"] == 0 and conversions["_components_of"] == 0
    # One entity read converts that entity only; its vector stays in the reply.
    top = reply[0].entity
    assert top is not None and top.id == "c0" and top.attributes == {"i": "0"}
    assert conversions["entity_from_proto"] == 1 and conversions["_vector_of"] == 0
    assert reply[0].entity is top and conversions["entity_from_proto"] == 1
    # The explanation: each part on its own first read.
    assert reply[0].components is not None and conversions["_components_of"] == 1
    assert conversions["_explained_path"] == 0
    assert reply[0].path is not None and conversions["_explained_path"] == 1
    # The context: its ids from the reply; its nodes on their first read, each node's path
    # and chunks when read.
    assert conversions["_context_of"] == 0
    context = reply.context
    assert context is not None and conversions["_context_of"] == 1
    assert context.ids[0] == "c0" and len(context.ids) >= 3
    assert conversions["_context_nodes"] == 0
    assert [n.hop for n in context.nodes][:2] == [0, 0] and conversions["_context_nodes"] == 1
    assert [n.id for n in context.nodes] == context.ids
    assert conversions["_node_path"] == 0 and conversions["_node_chunks"] == 0
    assert conversions["_edges_of"] == 0
    deepest = max(context.nodes, key=lambda n: n.hop)
    assert deepest.hop == 2
    # Reading a hop-2 node's path converts that path only (from the reply's steps).
    assert deepest.path.hops == 2 and conversions["_node_path"] == 1
    assert deepest.path.entity_ids[-1] == deepest.id
    assert [(e.relation, e.weight) for e in deepest.path.edges] == [("next", 0.5)] * 2
    assert deepest.chunks == [Chunk(f"t{deepest.id[1:]}", f"text {deepest.id[1:]}")]
    assert conversions["_node_chunks"] == 1
    assert context.edges and conversions["_edges_of"] == 1
    assert reply.context is context and conversions["_context_of"] == 1
    assert conversions["_context_nodes"] == 1 and conversions["_node_path"] == 1


def test_query_reply_converts_each_part_on_first_read(db: allidb.Client, conversions: Counter) -> None:
    entities, vectors = chain()
    db.put_many(entities)
    reply = db.query(vectors[0], trace_id="lazy-1", **QUESTION)
    check_lazy_reply(reply, conversions)
    # The converted reply equals one converted all at once (== reads every field).
    again = db.query(vectors[0], trace_id="lazy-1", **QUESTION)
    assert again.ids == reply.ids
    assert [n.path for n in again.context.nodes] == [n.path for n in reply.context.nodes]


def test_async_query_reply_converts_each_part_on_first_read(
    tenant: Tenant, conversions: Counter
) -> None:
    entities, vectors = chain()
    tenant.client().put_many(entities)

    async def ask():
        async with allidb.AsyncClient(tenant.daemon.grpc_addr, api_key=tenant.api_key) as db:
            check_lazy_reply(await db.query(vectors[0], trace_id="lazy-1", **QUESTION), conversions)

    # Checked inside the coroutine: asyncio.run (Python 3.11) may repr the result of its main
    # task, which converts every field.
    asyncio.run(ask())


def test_query_batch_replies_are_lazy(db: allidb.Client, conversions: Counter) -> None:
    entities, vectors = chain()
    db.put_many(entities)
    replies = db.query_batch(vectors[:3], k=3, hops=0, explain=True)
    assert [r.ids[0] for r in replies] == ["c0", "c1", "c2"]
    assert all(len(r.scores) == 3 for r in replies)
    assert sum(conversions.values()) == 0, conversions
    assert replies[1][0].entity.id == "c1"
    assert conversions["result_from_proto"] == 3 and conversions["entity_from_proto"] == 1


def test_lazy_reply_equals_eager_conversion() -> None:
    """A reply read field by field equals itself read all at once (==, repr, pickle)."""
    import pickle

    edge = pb.GraphEdge(from_entity="a", to_entity="b", relation="r", weight=0.5)
    message = pb.QueryResponse(
        results=[
            pb.QueryResult(entity_id="a", score=0.75,
                           entity=pb.Entity(entity_id="a", outgoing_edges=[edge]),
                           explanation=pb.QueryExplanation(vector_score=0.5)),
            pb.QueryResult(entity_id="b", score=0.25),
        ],
        trace_id="t",
        context=pb.QueryContext(
            nodes=[pb.ContextNode(entity_id="a"),
                   pb.ContextNode(entity_id="b", hop=1, step=pb.ContextStep(parent=0, relation="r"),
                                  chunks=[pb.TextChunk(chunk_id="x", text="y")])],
            edges=[edge],
        ),
    )
    lazy = _convert.query_response_from_proto(message)
    assert lazy.ids == ["a", "b"] and lazy.scores == [0.75, 0.25]
    copied = pickle.loads(pickle.dumps(_convert.query_response_from_proto(message)))
    assert repr(lazy) == repr(copied) and lazy == copied
    assert lazy.context.nodes[1].path.entity_ids == ["a", "b"]
    assert lazy.context.nodes[1].chunks == [Chunk("x", "y")]
    assert lazy[0].entity.edges[0].target == "b" and lazy[1].entity is None
    assert lazy[0].components.vector == 0.5 and lazy[1].components is None
    assert len(_convert.query_response_from_proto(pb.QueryResponse())) == 0
    # A step from a node not listed before it: raised when that node's path is read.
    message.context.nodes.add(entity_id="e", hop=1, step=pb.ContextStep(parent=2))
    context = _convert.query_response_from_proto(message).context
    assert context.ids == ["a", "b", "e"] and context.nodes[1].path.entity_ids == ["a", "b"]
    with pytest.raises(allidb.AlliDBError, match="not listed before it"):
        context.nodes[2].path


# ---- numpy ----------------------------------------------------------------------------------


class NoList(np.ndarray):
    """An array whose conversion to Python floats fails: the numpy path must not use it."""

    def tolist(self):  # type: ignore[override]
        raise AssertionError("the numpy path converted the array to Python floats")


def test_numpy_query_vector_is_sent_as_float32_bytes() -> None:
    rng = np.random.default_rng(9)
    vector = random_f32(rng, 384)
    request = _convert.query_request(vector.view(NoList), k=3)
    sent = np.array(request.query_vector, dtype=np.float32)
    assert sent.tobytes() == vector.tobytes()
    # The same request as the per-element path builds, from numpy and from a list.
    slow = _convert.query_options(k=3)
    slow.query_vector.extend(vector.tolist())
    assert request.SerializeToString() == slow.SerializeToString()
    assert _convert.query_request(vector.tolist(), k=3) == slow
    # float64 input is rounded to float32 as protobuf rounds it.
    wide = rng.standard_normal(384)
    slow = _convert.query_options(k=3)
    slow.query_vector.extend(wide.tolist())
    assert _convert.query_request(wide.view(NoList), k=3) == slow
    # A batch: one QueryVector per row, bit for bit.
    matrix = random_f32(rng, (5, 384))
    (batch,) = _convert.query_batch_requests(_convert.query_options(k=3), matrix.view(NoList), None, 3)
    got = np.array([list(v.values) for v in batch.vectors], dtype=np.float32)
    assert got.tobytes() == matrix.tobytes()
    # What numpy cannot say stays an error of the per-element path.
    with pytest.raises(ValueError, match="one-dimensional"):
        _convert.query_request(matrix, k=3)
    with pytest.raises(ValueError, match=r"vectors\[0\] must be one-dimensional"):
        _convert.query_batch_requests(_convert.query_options(k=3), matrix[None], None, 3)


def test_numpy_vectors_round_trip_bit_exactly(db: allidb.Client, conversions: Counter) -> None:
    rng = np.random.default_rng(21)
    vectors = random_f32(rng, (50, 16))
    vectors[0, :4] = [np.float32(1e-40), -0.0, np.float32(3.0e18), np.finfo(np.float32).tiny]
    db.put_many([Entity(f"n{i:02d}", vector=vectors[i]) for i in range(50)])
    # get: the vector as float32 without Python floats, then as floats.
    got = db.get("n00")
    array = got.vector_array()
    assert array.dtype == np.float32 and array.shape == (16,)
    assert array.tobytes() == vectors[0].tobytes()
    assert conversions["_vector_of"] == 0
    assert np.array(got.vector, dtype=np.float32).tobytes() == vectors[0].tobytes()
    assert got.vector_array().tobytes() == vectors[0].tobytes()  # from the floats now
    # query: each result's vector, and all of them as one matrix.
    reply = db.query(vectors[7], k=5, hops=0)
    matrix = reply.vectors_array()
    assert matrix.dtype == np.float32 and matrix.shape == (5, 16)
    rows = [int(i[1:]) for i in reply.ids]
    assert matrix.tobytes() == vectors[rows].tobytes()
    assert conversions["_vector_of"] == 1  # got.vector's, above
    assert reply[0].entity.vector_array().tobytes() == vectors[rows[0]].tobytes()
    assert reply.vectors_array().tobytes() == matrix.tobytes()  # from the converted results
    # query_batch from a float32 matrix answers as single queries do.
    batch = db.query_batch(vectors[:4], k=3, hops=0)
    assert [r.ids for r in batch] == [db.query(v.tolist(), k=3, hops=0).ids for v in vectors[:4]]
    # get_many: a matrix in the order of the entities found.
    many = db.get_many(["n03", "missing", "n01"])
    assert many.vectors_array().tobytes() == vectors[[3, 1]].tobytes()
    # No entity in the reply, or no vector: a clear error; an entity without a vector: None.
    with pytest.raises(ValueError, match="include_entity"):
        db.query(vectors[7], k=2, hops=0, include_entity=False).vectors_array()
    assert Entity("x").vector_array() is None
    assert Entity("x", vector=[0.5, 0.25]).vector_array().tolist() == [0.5, 0.25]


def test_numpy_api_without_numpy_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    entity = _convert.entity_from_proto(
        pb.Entity(entity_id="a", embeddings=[pb.VectorEmbedding(vector=[1.0, 2.0])])
    )
    monkeypatch.setitem(sys.modules, "numpy", None)  # `import numpy` now fails
    with pytest.raises(ImportError, match=r"allidb\[numpy\]"):
        entity.vector_array()
    with pytest.raises(ImportError, match=r"allidb\[numpy\]"):
        allidb.GetManyResult(entities=[entity]).vectors_array()
    # Lists still go out as float32 bytes without numpy.
    assert list(_convert.query_request([1.0, 2.0], k=1).query_vector) == [1.0, 2.0]
    assert entity.vector == [1.0, 2.0]


def test_lazy_context_paths_equal_the_parent_by_parent_rebuild() -> None:
    """Random contexts (steps forwards and backwards, whole paths, seeds): each node's lazily
    rebuilt path equals the one :func:`_convert.context_path` builds from its parent's."""
    rng = np.random.default_rng(36)
    for _ in range(20):
        message = pb.QueryContext()
        for i in range(int(rng.integers(1, 40))):
            node = message.nodes.add(entity_id=f"n{i}", hop=int(rng.integers(0, 3)))
            kind = rng.integers(0, 4) if i else 0
            if kind >= 2:
                node.step.parent = int(rng.integers(0, i))
                node.step.relation = f"r{kind}"
                node.step.weight = float(np.float32(rng.random()))
                node.step.reversed = bool(kind == 3)
            elif kind == 1:
                node.path.entity_ids.extend(["x", f"n{i}"])
                node.path.edges.add(from_entity="x", to_entity=f"n{i}", relation="p", weight=0.5)
        eager: list = []
        for node in message.nodes:
            eager.append(allidb.ContextNode(id=node.entity_id, hop=node.hop,
                                            path=_convert.context_path(eager, node)))
        lazy = _convert.context_from_proto(message)
        assert [n.path for n in lazy.nodes] == [n.path for n in eager]
