"""AlliDB quickstart with the `allidb` package: put two linked entities, read one back, query,
scan, and see an error as an exception.

Install the package (from the repository root), then run against a daemon on 127.0.0.1:7000:
    pip install ./clients/python
    python examples/python/quickstart.py [ADDR] [API_KEY]
"""

import sys

import allidb
from allidb import Edge, Entity

addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7000"
api_key = sys.argv[2] if len(sys.argv) > 2 else None

with allidb.Client(addr, api_key=api_key) as db:
    health = db.health()
    print("health:", health.status, health.version)

    paris = Entity(
        "paris", vector=[0.9, 0.1, 0.0], type="city", attributes={"country": "fr"},
        edges=[Edge.to("france", "capital_of", 1.0)],
    )
    france = Entity("france", vector=[0.7, 0.3, 0.0], type="country")
    written = db.put_many([paris, france])
    print("put_many:", written.written, "written")

    got = db.get("france")
    print("france incoming edges:", [(e.source, e.relation) for e in got.incoming_edges])

    answer = db.query([1.0, 0.0, 0.0], k=2, explain=True, trace_id="py-1")
    for r in answer:
        print(f"query: {r.id} score={r.score:.3f} path={r.path.entity_ids}")
    print("trace id echoed:", answer.trace_id)

    print("scan:", [e.id for e in db.scan()])
    print("traverse:", db.traverse("paris", max_hops=1).ids)

    try:
        db.query([1.0, 0.0])
    except allidb.InvalidArgument as err:
        print("wrong dimension:", type(err).__name__, "-", err.message)
