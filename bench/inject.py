#!/usr/bin/env python3
"""HTTP injection throughput (issue 13): spate between POST /api/inject/v1 and spate-sink.

Starts spate-sink and spate (durable spool, its own temporary directory, loopback only), then
posts --requests requests of --recipients recipients each (a builder message with a per-recipient
substitution, about --size octets of text body) from --clients threads, and reports, as one JSON
object: messages answered per second (the first POST to the last 200: every message durable),
the request latency (p50, p99), and messages delivered per second (the first POST to the sink
having all of them). Bounded: every wait has a deadline.

    bench/inject.py --build build [--requests 40] [--recipients 500] [--clients 4]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--recipients", type=int, default=500)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    spate_bin = os.path.join(a.build, "core", "spate")
    sink_bin = os.path.join(a.build, "bench", "spate-sink")
    work = tempfile.mkdtemp(prefix="spate-inject-bench-")
    total = a.requests * a.recipients
    procs = []
    try:
        port_file = os.path.join(work, "sink.port")
        sink_json = os.path.join(work, "sink.json")
        stats_file = os.path.join(work, "sink-stats.json")
        procs.append(subprocess.Popen([sink_bin, "--port-file", port_file, "--json", sink_json,
                                       "--stats-file", stats_file, "--threads", "1"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 10
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            if time.time() > deadline:
                sys.exit("spate-sink did not start")
            time.sleep(0.05)
        sink_port = int(open(port_file).read())
        config = os.path.join(work, "spate.toml")
        with open(config, "w") as f:
            f.write(f"""
[server]
listen = "127.0.0.1:0"
[spool]
path = "{work}/spool"
[metrics]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[shards]
count = {a.shards}
[delivery]
shaping = "none"
[dns]
nameservers = ["127.0.0.1:9"]
[routes]
"dest.test" = "127.0.0.1:{sink_port}"
[log]
records = ""
""")
        log_path = os.path.join(work, "spate.log")
        log = open(log_path, "wb")
        procs.append(subprocess.Popen([spate_bin, "--config", config], stdout=log, stderr=log))
        admin = None
        deadline = time.time() + 30
        while admin is None:
            if time.time() > deadline:
                sys.exit("spate did not start: " + open(log_path).read())
            for line in open(log_path, errors="replace"):
                if "spate ready:" in line:
                    admin = line.split(" admin=")[1].split()[0]
            time.sleep(0.05)

        text = ("Hello {{ name }}, " + "x" * 70 + "\n") * max(1, a.size // 88)
        bodies = []
        for r in range(a.requests):
            bodies.append(json.dumps({
                "envelope_sender": "bounces@src.test",
                "content": {"from": "news@src.test", "subject": "Hi {{ name }}",
                            "text_body": text},
                "recipients": [{"email": f"u{r}-{i}@dest.test", "name": f"User {i}"}
                               for i in range(a.recipients)]}).encode())
        latencies = []
        lock = threading.Lock()
        todo = list(range(a.requests))

        def client():
            while True:
                with lock:
                    if not todo:
                        return
                    r = todo.pop()
                req = urllib.request.Request(f"http://{admin}/api/inject/v1", data=bodies[r],
                                             method="POST")
                t0 = time.monotonic()
                with urllib.request.urlopen(req, timeout=a.timeout) as resp:
                    out = json.loads(resp.read())
                took = time.monotonic() - t0
                if out.get("success_count") != a.recipients:
                    sys.exit(f"request {r}: {out}")
                with lock:
                    latencies.append(took)

        start = time.monotonic()
        threads = [threading.Thread(target=client) for _ in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(a.timeout)
        answered = time.monotonic() - start
        delivered = None
        deadline = time.time() + a.timeout
        while time.time() < deadline:
            try:
                stats = json.load(open(stats_file))
                if stats.get("messages", 0) >= total:
                    delivered = time.monotonic() - start
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        latencies.sort()
        print(json.dumps({
            "requests": a.requests, "recipients_per_request": a.recipients,
            "clients": a.clients, "messages": total,
            "answered_msgs_per_s": round(total / answered),
            "request_latency_p50_s": round(latencies[len(latencies) // 2], 3),
            "request_latency_p99_s": round(latencies[min(len(latencies) - 1,
                                                          int(len(latencies) * 0.99))], 3),
            "delivered_msgs_per_s": round(total / delivered) if delivered else None,
        }))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
