#!/usr/bin/env python3
"""The memory burst of issue 21 (results in docs/benchmarks.md "Memory under a burst").

C clients at once (default 256), each sending one BatchPutEntities of B entities (default 1,000:
a 384-d vector and a 12 kB chunk each, about 13.6 MB a request) to a fresh `allidbd`; then the
daemon is left idle; then `kill -9` and a restart. Printed as one JSON object:

- replies: OK and RESOURCE_EXHAUSTED counts (any other status is listed), p50/p99 of accepted
  requests, accepted entities/s;
- RSS of the daemon (VmRSS from /proc, sampled every 50 ms): before, peak during the burst,
  and after `--idle` seconds idle;
- WAL bytes on disk (data dir `lsm/*.wal`) after the idle time;
- the restart: seconds from spawning the daemon again to its `allidbd: ready` line;
- the check: every acknowledged batch's first and last entity read back after the restart.

Requests are built as raw protobuf bytes (one encoded entity template, its id and vector
patched per entity), so building 3 GiB of requests takes seconds, not minutes. Needs grpcio,
protobuf and numpy, and the package's generated stubs (clients/python/src):

    python3 -m venv /tmp/pyenv && /tmp/pyenv/bin/pip install ./clients/python numpy
    /tmp/pyenv/bin/python bench/burst.py target/release/allidbd [--clients 256] [--idle 60] \
        [-- --set server.max_inflight_request_bytes=...]
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import List

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients/python/src"))
from allidb._proto import allidb_pb2 as pb  # noqa: E402

ID_TEMPLATE = "burst-000-000000"
MARKER = 0.123456789


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wal_bytes(data: Path) -> int:
    return sum(p.stat().st_size for p in (data / "lsm").glob("*.wal"))


class Daemon:
    """An `allidbd` on free loopback ports over `data`; `started` is the seconds to ready."""

    def __init__(self, exe: str, data: Path, extra: List[str], log: Path) -> None:
        self.log = open(log, "ab")
        begin = time.monotonic()
        self.proc = subprocess.Popen(
            [exe, "--data-dir", str(data), "--grpc-addr", "127.0.0.1:0",
             "--http-addr", "127.0.0.1:0", "--set", "server.admin_addr=127.0.0.1:0",
             "--log-level", "warn", *extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        self.grpc = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            m = re.match(r"allidbd: grpc listening on (\S+)", line)
            if m:
                self.grpc = m.group(1)
            if line.strip() == "allidbd: ready":
                break
        self.started = time.monotonic() - begin
        if not self.grpc or self.proc.poll() is not None:
            sys.exit(f"allidbd did not start; log in {log}")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()


def template(dim: int, chunk_bytes: int) -> tuple:
    entity = pb.Entity(entity_id=ID_TEMPLATE, entity_type="doc")
    entity.embeddings.add().vector.extend([MARKER] * dim)
    entity.chunks.add(chunk_id="c0", text="x" * chunk_bytes)
    raw = entity.SerializeToString()
    id_at = raw.index(ID_TEMPLATE.encode())
    vec_at = raw.index(np.full(dim, MARKER, dtype="<f4").tobytes())
    return raw, id_at, vec_at


def request_bytes(client: int, batch: int, dim: int, parts: tuple, rng) -> bytes:
    raw, id_at, vec_at = parts
    entity = bytearray(raw)
    # BatchPutEntitiesRequest.entities = 1 (length-delimited), each entity the same length.
    head = bytes([0x0A]) + encode_varint(len(raw))
    out = bytearray()
    vectors = rng.standard_normal((batch, dim)).astype("<f4")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for i in range(batch):
        entity[id_at:id_at + len(ID_TEMPLATE)] = f"burst-{client:03d}-{i:06d}".encode()
        entity[vec_at:vec_at + 4 * dim] = vectors[i].tobytes()
        out += head
        out += entity
    return bytes(out)


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("allidbd")
    ap.add_argument("--clients", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--chunk-bytes", type=int, default=12_000)
    ap.add_argument("--idle", type=float, default=60.0)
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.extra = extra  # flags passed to allidbd (after --)

    work = Path(tempfile.mkdtemp(prefix="allidb-burst-"))
    data, log = work / "data", work / "allidbd.log"
    rng = np.random.default_rng(7)
    parts = template(args.dim, args.chunk_bytes)
    requests = [request_bytes(c, args.batch, args.dim, parts, rng) for c in range(args.clients)]
    daemon = Daemon(args.allidbd, data, args.extra, log)
    pid = daemon.proc.pid
    before = rss_kib(pid)
    peak = [before]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    results: List[tuple] = [None] * args.clients  # type: ignore
    options = [("grpc.max_receive_message_length", 64 << 20)]
    channels = [grpc.insecure_channel(daemon.grpc, options=options + [("grpc.use_local_subchannel_pool", 1)])
                for _ in range(args.clients)]
    calls = [ch.unary_unary("/allidb.AlliDB/BatchPutEntities",
                            request_serializer=lambda b: b,
                            response_deserializer=pb.BatchPutEntitiesResponse.FromString)
             for ch in channels]
    for ch in channels:
        grpc.channel_ready_future(ch).result(timeout=30)
    go = threading.Barrier(args.clients + 1)

    def send(i: int) -> None:
        go.wait()
        t0 = time.monotonic()
        try:
            calls[i](requests[i], timeout=600)
            results[i] = ("OK", time.monotonic() - t0, "")
        except grpc.RpcError as e:
            results[i] = (e.code().name, time.monotonic() - t0, e.details())

    threads = [threading.Thread(target=send, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    go.wait()
    begin = time.monotonic()
    for t in threads:
        t.join()
    burst_secs = time.monotonic() - begin
    burst_peak = peak[0]
    time.sleep(args.idle)
    sampling.set()
    idle_rss = rss_kib(pid)
    wal = wal_bytes(data)
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait()
    for ch in channels:
        ch.close()
    restarted = Daemon(args.allidbd, data, args.extra, log)
    ok = [i for i, r in enumerate(results) if r[0] == "OK"]
    lost = []
    with grpc.insecure_channel(restarted.grpc, options=options) as ch:
        get = ch.unary_unary("/allidb.AlliDB/GetEntity",
                             request_serializer=pb.GetEntityRequest.SerializeToString,
                             response_deserializer=pb.GetEntityResponse.FromString)
        for i in ok:
            for j in (0, args.batch - 1):
                eid = f"burst-{i:03d}-{j:06d}"
                try:
                    get(pb.GetEntityRequest(entity_id=eid), timeout=30)
                except grpc.RpcError as e:
                    lost.append((eid, e.code().name))
    restarted.proc.send_signal(signal.SIGTERM)
    restarted.proc.wait(timeout=120)
    codes = {}
    for r in results:
        codes[r[0]] = codes.get(r[0], 0) + 1
    lat = sorted(r[1] for r in results if r[0] == "OK")
    shed_messages = sorted({r[2][:120] for r in results if r[0] == "RESOURCE_EXHAUSTED"})
    print(json.dumps({
        "clients": args.clients, "batch": args.batch, "request_mb": round(len(requests[0]) / 1e6, 2),
        "replies": codes, "shed_messages": shed_messages[:3],
        "accepted_p50_s": round(statistics.median(lat), 2) if lat else None,
        "accepted_p99_s": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2) if lat else None,
        "accepted_entities_per_s": round(len(ok) * args.batch / burst_secs),
        "rss_before_mib": before // 1024, "rss_peak_mib": burst_peak // 1024,
        "rss_after_idle_mib": idle_rss // 1024, "idle_s": args.idle,
        "wal_mib_after_idle": round(wal / 2**20, 1),
        "restart_to_ready_s": round(restarted.started, 2),
        "acknowledged_missing": lost[:5], "acknowledged_missing_count": len(lost),
    }, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
