"""What the crash matrix and the fault injection tests share: a destination that can stop a
delivery at a chosen point or act right after its 250 (HookSink), submitting clients that keep
the ledger of what spate answered (Load), and the invariant check over the two (Ledger).

Every message carries "X-Seq: <n>", unique over a test, so the sink knows which one it got.
"""
import collections
import os
import random
import re
import select
import smtplib
import socket
import threading
import time

import harness

CRLF = b"\r\n"
IO_TIMEOUT = 30  # a sink connection that hears nothing for this long gives up
SEQ = re.compile(rb"^X-Seq: (\d+)\r?$", re.M)


class HookSink:
    """A destination on a loopback port (bound to port 0, one thread per connection) that
    offers PIPELINING and answers 250 to everything, and records the X-Seq of every message it
    answered 250 at the end of data. For the crash matrix it can:

    hold(n, stage): the next `n` transactions to reach `stage` get no reply there: "mail" (the
        MAIL command), "data" (after the 354, nothing of the data read), "dot" (the whole data
        read, before its 250). Their threads wait until release() and then close.
    after_250: a callable(seq, count) run on the connection's thread right after a 250 to the
        end of data went out (count: 250s so far), before the next byte is read.
    refuse: while true, every connection is answered 421 and closed.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.delivered = collections.Counter()  # X-Seq -> 250s sent for it
        self.count = 0          # 250s sent to an end of data, in all
        self.held = 0           # transactions being held now
        self.after_250 = None
        self.refuse = False
        self._hold_left = 0
        self._hold_stage = None
        self._release = threading.Event()
        self._stopping = False
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def hold(self, n, stage):
        assert stage in ("mail", "data", "dot")
        with self.lock:
            self._release.clear()
            self._hold_left, self._hold_stage = n, stage

    def release(self):
        with self.lock:
            self._hold_left = 0
        self._release.set()

    def delivered_set(self):
        with self.lock:
            return set(self.delivered)

    def stop(self):
        self._stopping = True
        self.release()
        self.listener.close()

    def _accept_loop(self):
        while not self._stopping:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _maybe_hold(self, stage):
        """True when this transaction is held at `stage`: waits for release(), then the
        connection is to close without a reply."""
        with self.lock:
            if self._hold_stage != stage or self._hold_left <= 0:
                return False
            self._hold_left -= 1
            self.held += 1
        self._release.wait(IO_TIMEOUT)
        with self.lock:
            self.held -= 1
        return True

    def _serve(self, sock):
        try:
            with sock:
                if self.refuse:
                    sock.sendall(b"421 4.3.2 sink.test refusing\r\n")
                    return
                self._session(_Lines(sock))
        except OSError:
            pass

    def _session(self, conn):
        conn.send(b"220 sink.test ESMTP\r\n")
        while True:
            line = conn.line()
            if line is None:
                return
            verb = line.split(b" ", 1)[0].upper()
            if verb == b"EHLO":
                conn.send(b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                          b"250 SIZE 52428800\r\n")
            elif verb == b"MAIL":
                if self._maybe_hold("mail"):
                    return
                conn.send(b"250 2.1.0 Ok\r\n")
            elif verb == b"DATA":
                conn.send(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                if self._maybe_hold("data"):
                    return
                data = conn.data()
                if data is None:
                    return
                if self._maybe_hold("dot"):
                    return
                m = SEQ.search(data)
                conn.send(b"250 2.0.0 Ok: queued\r\n")
                with self.lock:
                    if m:
                        self.delivered[int(m.group(1))] += 1
                    self.count += 1
                    count, hook = self.count, self.after_250
                if hook:
                    hook(int(m.group(1)) if m else None, count)
            elif verb == b"QUIT":
                conn.send(b"221 2.0.0 Bye\r\n")
                return
            else:  # RCPT, RSET, NOOP
                conn.send(b"250 2.0.0 Ok\r\n")


class _Lines:
    """Buffered line reader over a socket, with a deadline on every read."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        ready, _, _ = select.select([self.sock], [], [], IO_TIMEOUT)
        if not ready:
            return False
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def line(self):
        while CRLF not in self.buf:
            if not self._fill():
                return None
        line, self.buf = self.buf.split(CRLF, 1)
        return line

    def data(self):
        """The data up to the line ".", un-stuffed enough to find the X-Seq header; None at
        EOF."""
        end = b"\r\n.\r\n"
        while True:
            # The data starts right after the DATA line, so a lone "." first line ends it too.
            if self.buf.startswith(b".\r\n"):
                self.buf = self.buf[3:]
                return b""
            i = self.buf.find(end)
            if i >= 0:
                data, self.buf = self.buf[:i + 2], self.buf[i + len(end):]
                return data
            if not self._fill():
                return None


def preload(lib, **variables):
    """The environment of a spate run with the shim `lib` preloaded, and `variables`. Under
    AddressSanitizer (make asan-test) the sanitizer's runtime must come first among the
    libraries unless told otherwise: the shim comes before it, ASan's interceptors after."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    return dict(variables, LD_PRELOAD=lib,
                ASAN_OPTIONS=(asan + ":" if asan else "") + "verify_asan_link_order=0")


def message(seq, size=0):
    """The data of message `seq` (no line starts with a dot), `size` octets of body or more."""
    body = f"Subject: {seq}\r\nX-Seq: {seq}\r\n\r\nbody {seq}\r\n"
    line = "x" * 76 + "\r\n"
    return (body + line * (size // len(line))).encode()


class Load:
    """`clients` SMTP clients, each on its own connection and thread, submitting messages
    seq = base + client * per_client + i (i < per_client) to user<seq>@dest.test, until they
    are done, stop() is called, or spate goes away under them. Their ledger:

    sent_dot: every message whose final "." went out, seq -> when (time.monotonic(), taken
    after the send); acked: those answered 250; refused: those answered anything else,
    seq -> code; replied: seq -> when the reply was read. A message in sent_dot and neither is
    in doubt (spate died before its reply was read).

    on_dot(client, seq): called on the client's thread right after the "." went out, before
    the reply is read. pause_at: {client: i}: that client stops half way through the data of
    its i-th message, counted in mid_data, until resume() (then it goes on; spate is usually
    dead by then). The clients' connections are from the start of the run: a kill hits every
    one of them in the middle of something.
    """

    def __init__(self, port, clients, per_client, base=0, size=1024, on_dot=None,
                 pause_at=None):
        self.port, self.clients, self.per_client, self.base = port, clients, per_client, base
        self.size = size
        self.on_dot = on_dot
        self.pause_at = pause_at or {}
        self.lock = threading.Lock()
        self.sent_dot, self.acked, self.refused, self.replied = {}, set(), {}, {}
        self.mid_data = 0
        self.errors = collections.Counter()   # how sessions ended: exception class names
        self.early = collections.Counter()    # refusals before the data: code -> count
        self._stop = threading.Event()
        self._resume = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(c,), daemon=True)
                        for c in range(clients)]
        for t in self.threads:
            t.start()

    def acked_count(self):
        with self.lock:
            return len(self.acked)

    def replies(self):
        """Replies to the final "." so far: code -> count."""
        with self.lock:
            out = collections.Counter(self.refused.values())
            out[250] += len(self.acked)
            return out

    def refusals(self):
        """Every reply that refused a message, at MAIL, RCPT, DATA or after the final ".":
        code -> count (a spool that cannot write refuses at MAIL)."""
        with self.lock:
            out = collections.Counter(self.refused.values())
            out.update(self.early)
            return out

    def resume(self):
        self._resume.set()

    def stop(self, timeout=30):
        self._stop.set()
        self._resume.set()
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "a client did not finish"

    def in_doubt(self):
        with self.lock:
            return set(self.sent_dot) - self.acked - set(self.refused)

    def acked_between(self, start, end):
        """Messages answered 250 whose "." went out after `start` and whose reply was read
        before `end` (time.monotonic()): their commit was written entirely in between."""
        with self.lock:
            return {s for s in self.acked if self.sent_dot[s] > start and self.replied[s] < end}

    def _run(self, client):
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=IO_TIMEOUT) as smtp:
                smtp.ehlo("client.test")
                for i in range(self.per_client):
                    if self._stop.is_set():
                        break
                    seq = self.base + client * self.per_client + i
                    self._one(smtp, client, i, seq)
                self._stop.wait()  # hold the connection: a kill then finds it open
        except (OSError, smtplib.SMTPException) as e:
            with self.lock:
                self.errors[type(e).__name__] += 1

    def _one(self, smtp, client, i, seq):
        code, _ = smtp.mail("sender@campaign.test")
        if code != 250:
            with self.lock:
                self.errors[f"MAIL {code}"] += 1
                self.early[code] += 1
            if 400 <= code < 500:
                time.sleep(0.01)  # a client waits a little before it tries the next one
            return
        code, _ = smtp.rcpt(f"user{seq}@dest.test")
        if code != 250:
            with self.lock:
                self.errors[f"RCPT {code}"] += 1
                self.early[code] += 1
            smtp.rset()
            return
        smtp.putcmd("data")
        code, _ = smtp.getreply()
        if code != 354:
            with self.lock:
                self.errors[f"DATA {code}"] += 1
                self.early[code] += 1
            return
        data = message(seq, self.size)
        half = len(data) // 2
        smtp.send(data[:half])
        if self.pause_at.get(client) == i:
            with self.lock:
                self.mid_data += 1
            self._resume.wait(IO_TIMEOUT)
            if self._stop.is_set():
                return  # spate is gone: this message's data never ended
        smtp.send(data[half:] + b".\r\n")
        with self.lock:
            self.sent_dot[seq] = time.monotonic()
        if self.on_dot:
            self.on_dot(client, seq)
        code, _ = smtp.getreply()
        with self.lock:
            self.replied[seq] = time.monotonic()
            if code == 250:
                self.acked.add(seq)
            else:
                self.refused[seq] = code


class Ledger:
    """The test's record over every round of one case: what spate acknowledged (250), what it
    refused, what was left in doubt, and, from the sink, what arrived how often."""

    def __init__(self):
        self.acked, self.in_doubt, self.refused = set(), set(), {}
        self.rounds = 0

    def add(self, load):
        load.stop()
        with load.lock:
            self.acked |= load.acked
            self.refused.update(load.refused)
            self.in_doubt |= set(load.sent_dot) - load.acked - set(load.refused)
        self.rounds += 1

    def summary(self, phase, sink):
        delivered = sink.delivered_set()
        with sink.lock:
            counts = dict(sink.delivered)
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        return {
            "phase": phase,
            "rounds": self.rounds,
            "acked": len(self.acked),
            "delivered": len(delivered & self.acked),
            "missing": sorted(self.acked - delivered),
            "duplicates": duplicates,
            "in_doubt": len(self.in_doubt),
            "in_doubt_delivered": len(self.in_doubt & delivered),
            "refused": len(self.refused),
            "refused_delivered": len(set(self.refused) & delivered),
        }


def report(summary, prefix="crash_matrix", **more):
    """The line the test prints for its case."""
    fields = dict(summary, **more)
    missing = fields.pop("missing")
    text = " ".join(f"{k}={v}" for k, v in fields.items())
    if missing:
        text += f" MISSING={missing[:20]}{'...' if len(missing) > 20 else ''}"
    print(f"{prefix}: {text}", flush=True)


def seeded_random(default_seed, name, prefix="crash_matrix"):
    """A random generator for one case: CRASH_SEED from the environment, else the default;
    printed so that a failing run can be replayed."""
    seed = int(os.environ.get("CRASH_SEED", default_seed))
    print(f"{prefix}: case={name} seed={seed} (CRASH_SEED={seed} replays it)", flush=True)
    return random.Random(f"{seed}:{name}")


def wait_until_delivered(spate, sink, acked, timeout):
    """Waits until every acknowledged message reached the sink and spate's spool is empty."""
    harness.wait_for(lambda: acked <= sink.delivered_set(), timeout,
                     "every acknowledged message at the sink")
    harness.wait_for(lambda: spate.metric("spate_spool_messages") == 0, timeout,
                     "an empty spool")
