#!/usr/bin/env python3
"""The disk's own limits for a durable spool, measured the way spate's commit thread uses it.

A durable MTA writes every body to disk and waits for fdatasync before its 250, so two numbers
of the file system under the spool bound it whatever the MTA does:

- bandwidth: appends of one commit batch at a time (--batch-bytes: 1, 4 and 16 MB by default),
  each followed by fdatasync, --bytes in all per size; reported per size as MB/s and as the
  100 KB messages per second that rate holds (one copy of each body and ~200 bytes of records:
  the least a durable spool can write). What a sync costs depends on what it carries, so the
  bound is the curve; `bound_100k` is its 4 MB point, about one of spate's commit batches of
  100 KB messages (15-40 of them);
- latency: back-to-back appends of a small batch (--small-bytes, 8 KB: a group commit of four
  2 KB messages) each followed by fdatasync; the percentiles of the fdatasync, i.e. the floor
  under a durable accept's latency.

Usage: bench/disk.py [--dir DIR] (default $TMPDIR), prints JSON. bench/e2e.py runs it in the
full suite (the "disk" entry of summary.json) in the directory the spools go to. Bounded in bytes
and time; the files are removed.
"""
import argparse
import json
import os
import sys
import tempfile
import time


def percentile(sorted_values, q):
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, int(q / 100.0 * len(sorted_values)))
    return sorted_values[i]


def bandwidth(directory, total_bytes, batch_bytes, timeout_s):
    """MB/s of append + fdatasync in batch_bytes pieces, up to total_bytes or timeout_s."""
    buf = os.urandom(batch_bytes)  # not zeros: nothing below may compress or skip them
    fd, path = tempfile.mkstemp(dir=directory, prefix="spate-disk-", suffix=".bw")
    try:
        written = 0
        start = time.perf_counter()
        while written < total_bytes and time.perf_counter() - start < timeout_s:
            view = memoryview(buf)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fdatasync(fd)
            written += batch_bytes
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        os.unlink(path)
    return written, elapsed


def latency(directory, small_bytes, count, timeout_s):
    """fdatasync times (ms, sorted) of back-to-back small appends."""
    buf = os.urandom(small_bytes)
    fd, path = tempfile.mkstemp(dir=directory, prefix="spate-disk-", suffix=".lat")
    times = []
    try:
        start = time.perf_counter()
        while len(times) < count and time.perf_counter() - start < timeout_s:
            os.write(fd, buf)
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - t) * 1000.0)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return times


def measure(directory, total_bytes=1 << 30, batch_sizes=(1 << 20, 4 << 20, 16 << 20),
            small_bytes=8192, syncs=20000, timeout_s=20.0, body_bytes=102400):
    # A spooled body costs its bytes plus a record header and its envelope's share of the WAL:
    # ~200 bytes, counted so the bound is not flattering.
    per_message = body_bytes + 200
    curve = []
    for batch_bytes in batch_sizes:
        written, elapsed = bandwidth(directory, total_bytes, batch_bytes, timeout_s)
        rate = written / elapsed if elapsed > 0 else 0.0
        curve.append({"batch_bytes": batch_bytes, "bytes": written, "seconds": round(elapsed, 3),
                      "mb_per_s": round(rate / 1e6, 1),
                      "msgs_per_s_100k": round(rate / per_message, 1)})
    times = latency(directory, small_bytes, syncs, timeout_s)
    bound = next((c for c in curve if c["batch_bytes"] == 4 << 20), curve[-1] if curve else None)
    return {
        "dir": directory,
        "bandwidth": curve,
        "bound_100k": bound,
        # To the 0.1 us: on tmpfs an fdatasync takes well under a microsecond.
        "fdatasync_ms": {"count": len(times), "append_bytes": small_bytes,
                         "p50": round(percentile(times, 50), 4),
                         "p90": round(percentile(times, 90), 4),
                         "p99": round(percentile(times, 99), 4),
                         "p99.9": round(percentile(times, 99.9), 4),
                         "max": round(times[-1], 4) if times else 0.0},
    }


def main(argv):
    ap = argparse.ArgumentParser(prog="disk.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--bytes", type=int, default=1 << 30,
                    help="bandwidth: bytes in all, per batch size")
    ap.add_argument("--batch-bytes", default="1048576,4194304,16777216",
                    help="bandwidth: comma list of batch sizes (bytes per fdatasync)")
    ap.add_argument("--small-bytes", type=int, default=8192)
    ap.add_argument("--syncs", type=int, default=20000, help="latency: fdatasyncs at most")
    ap.add_argument("--timeout", type=float, default=20.0, help="per part, seconds")
    p = ap.parse_args(argv)
    sizes = tuple(int(x) for x in p.batch_bytes.split(",") if x)
    print(json.dumps(measure(p.dir, p.bytes, sizes, p.small_bytes, p.syncs, p.timeout), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
