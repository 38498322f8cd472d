"""The `allidbd` process of the benchmark scripts: started on free loopback ports (gRPC, HTTP,
admin) with its own data directory, read through its HTTP gateway and admin metrics, and its CPU
time from /proc (Linux)."""

import http.client
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request


def free_port_block():
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1] % 20000 + 30000
        ok = True
        for p in range(port, port + 3):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return port


class Daemon:
    """A fresh `allidbd` on loopback ports with its data directory in `work` and `extra`
    flags; waits for its `ready` line (exits the script with the log if it does not come)."""

    def __init__(self, binary, work, extra=()):
        port = free_port_block()
        self.grpc = f"127.0.0.1:{port}"
        self.http = ("127.0.0.1", port + 1)
        self.admin = f"127.0.0.1:{port + 2}"
        self.log = open(os.path.join(work, "daemon.log"), "w+")
        self.process = subprocess.Popen(
            [binary, "--data-dir", os.path.join(work, "data"),
             "--grpc-addr", f"127.0.0.1:{port}", "--http-addr", f"127.0.0.1:{port + 1}",
             "--set", f"server.admin_addr={self.admin}", *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(300):
            self.log.seek(0)
            if "ready" in self.log.read():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.log.seek(0)
        sys.exit("allidbd did not start:\n" + self.log.read())

    def post(self, connection, path, body):
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            sys.exit(f"POST {path}: {response.status} {data[:500]!r}")
        return data

    def connection(self):
        return http.client.HTTPConnection(*self.http, timeout=120)

    def pending(self):
        text = urllib.request.urlopen(f"http://{self.admin}/metrics").read().decode()
        values = re.findall(r"^allidb_vector_index_pending\S* (\S+)$", text, re.M)
        return sum(float(v) for v in values)

    def cpu_seconds(self):
        """User + system CPU time of the daemon so far (Linux /proc)."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.process.terminate()
        self.process.wait()
