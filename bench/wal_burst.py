#!/usr/bin/env python3
"""WAL retention and restart time after a burst (issue 21), against a real `allidbd`.

Starts the daemon on an empty data directory, sends `--requests` BatchPutEntities over the HTTP
JSON gateway from `--concurrency` clients (each request `--batch` entities with a `--dim`-d
vector and a `--chunk`-byte text chunk: 13.6 MB of data at the defaults), samples the WAL on
disk every 5 s for `--idle` seconds, then kills the daemon with SIGKILL, restarts it on the same
directory and reports the time from the restart to its `allidbd: ready` line, and checks that a
sample of the acknowledged entities is there. Standard library only.

Example (what docs/operations.md reports):
  bench/wal_burst.py --allidbd target/debug/allidbd --data /tmp/wal-burst --requests 154 \
      --concurrency 16 --idle 105 -- --set index.max_unindexed_vectors=200000
Arguments after `--` are passed to both daemon starts. `--kill-during S` kills the daemon S
seconds into the burst instead (requests in flight); `--at-once` encodes every request first and
sends them all at the same moment, one client each.
"""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

PORTS = {"grpc": 17100, "http": 17101, "admin": 17102}


def wal_on_disk(data):
    lsm = os.path.join(data, "lsm")
    names = [n for n in os.listdir(lsm) if n.endswith(".wal")]
    return len(names), sum(os.path.getsize(os.path.join(lsm, n)) for n in names)


def start(allidbd, data, extra):
    args = [allidbd, "--set", f"storage.data_dir={data}",
            "--set", f"server.grpc_addr=127.0.0.1:{PORTS['grpc']}",
            "--set", f"server.http_addr=127.0.0.1:{PORTS['http']}",
            "--set", f"server.admin_addr=127.0.0.1:{PORTS['admin']}"] + extra
    began = time.time()
    log = open(os.path.join(os.path.dirname(data.rstrip("/")) or ".",
                            os.path.basename(data.rstrip("/")) + ".log"), "a")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True)
    for line in proc.stdout:
        if "allidbd: ready" in line:
            return proc, time.time() - began
    sys.exit(f"allidbd exited before ready ({proc.wait()})")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--allidbd", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--requests", type=int, default=154)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--chunk", type=int, default=12000)
    p.add_argument("--idle", type=int, default=105)
    p.add_argument("--kill-during", type=float, default=None, metavar="SECONDS",
                   help="kill -9 this long after the burst began, requests still in flight "
                        "(instead of after the idle time)")
    p.add_argument("--at-once", action="store_true",
                   help="encode every request first, then send them all at the same moment "
                        "(one client per request)")
    p.add_argument("extra", nargs="*")
    a = p.parse_args()
    shutil.rmtree(a.data, ignore_errors=True)
    proc, took = start(a.allidbd, a.data, a.extra)
    print(f"first start: ready after {took:.2f} s", flush=True)

    rng = random.Random(7)
    base = [[round(rng.uniform(-1, 1), 3) for _ in range(a.dim)] for _ in range(a.batch)]
    text = "x" * a.chunk
    next_request = iter(range(a.requests))
    lock = threading.Lock()
    codes, acked = {}, []

    def body(r):
        shift = r % a.dim
        return json.dumps({"entities": [{
            "entity_id": f"b{r}-{i}",
            "embeddings": [{"vector": v[shift:] + v[:shift]}],
            "chunks": [{"chunk_id": "c0", "text": text}],
        } for i, v in enumerate(base)]}, separators=(",", ":")).encode()

    bodies = {r: body(r) for r in range(a.requests)} if a.at_once else {}
    if a.at_once:
        a.concurrency = a.requests

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", PORTS["http"], timeout=600)
        while True:
            with lock:
                r = next(next_request, None)
            if r is None:
                return
            payload = bodies.pop(r) if a.at_once else body(r)
            try:
                conn.request("POST", "/entities/batch", payload,
                             {"content-type": "application/json"})
                resp = conn.getresponse()
                resp.read()
            except OSError:
                return  # the daemon was killed

            with lock:
                codes[resp.status] = codes.get(resp.status, 0) + 1
                if resp.status == 200:
                    acked.append(r)

    began = time.time()
    threads = [threading.Thread(target=client) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    if a.kill_during is not None:
        time.sleep(a.kill_during)
        files, size = wal_on_disk(a.data)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for t in threads:
            t.join()
        with lock:
            print(f"kill -9 {a.kill_during} s into the burst: {len(acked)} requests acknowledged, "
                  f"WAL on disk {files} files, {size / 2**20:.0f} MiB", flush=True)
        a.idle = -1
    for t in threads:
        t.join()
    end = time.time()
    print(f"burst: {a.requests} requests in {end - began:.1f} s, HTTP statuses {codes}", flush=True)
    while a.idle >= 0:
        waited = time.time() - end
        files, size = wal_on_disk(a.data)
        print(f"idle {waited:4.0f} s: {files} WAL files, {size / 2**20:.0f} MiB", flush=True)
        if waited >= a.idle:
            break
        time.sleep(5)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    files, size = wal_on_disk(a.data)
    print(f"kill -9; WAL on disk: {files} files, {size / 2**20:.0f} MiB", flush=True)
    proc, took = start(a.allidbd, a.data, a.extra)
    print(f"restart: ready after {took:.2f} s", flush=True)
    conn = http.client.HTTPConnection("127.0.0.1", PORTS["http"], timeout=60)
    missing = 0
    for r in random.Random(1).sample(acked, min(20, len(acked))):
        for i in (0, a.batch - 1):
            conn.request("GET", f"/entity/b{r}-{i}")
            resp = conn.getresponse()
            resp.read()
            missing += resp.status != 200
    print(f"acknowledged entities checked: {2 * min(20, len(acked))}, missing: {missing}")
    proc.send_signal(signal.SIGTERM)
    proc.wait()


if __name__ == "__main__":
    main()
