"""Outbound delivery against a scripted SMTP server: pool limits and reuse, PIPELINING (and
lock-step without it), per-recipient outcomes and retries, dot-stuffing and 8-bit bodies, and
a connection lost after the data.

The scripted server (ScriptedServer below) is written for these tests: it records every byte
chunk it receives (with a timestamp), every transaction and whether the client said QUIT, and
answers each recipient as its local part says: "defer..." gets 451 4.2.0 the first time and 250
after that, "reject..." gets 550 5.1.1, anything else 250. Every wait is on a condition with a
deadline (harness.wait_for), never a bare sleep.
"""
import collections
import os
import re
import select
import shutil
import smtplib
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

CRLF = b"\r\n"
IO_TIMEOUT = 30  # a scripted connection that hears nothing for this long gives up


class Transaction:
    """One MAIL transaction as the scripted server saw it."""

    def __init__(self, mail):
        self.mail = mail                # the MAIL command line, without CRLF
        self.rcpts = []                 # (address, reply code), in order
        self.data_reply = None          # reply code to DATA
        self.raw_data = None            # the data as sent (stuffed, with the final ".CRLF")
        self.body = None                # the data un-stuffed (RFC 5321 §4.5.2), no final "."
        self.final_reply = None         # reply code to the end of data; None: none sent
        self.dropped = False            # the server closed instead of answering the data
        self.data_seen_before_mail_reply = None  # hold_mail_until_data: DATA came in time
        self.bytes_before_354 = 0       # bytes the client sent after DATA before the 354
        # hold_eod_until_next: the next transaction's MAIL, RCPT and DATA came before the reply
        # to this end of data (the client did not wait for it)
        self.next_before_eod_reply = None

    def accepted(self):
        return [a for a, code in self.rcpts if code == 250]


class ScriptedConnection:
    """The server side of one connection, run on its own thread."""

    def __init__(self, server, sock, cid):
        self.server = server
        self.sock = sock
        self.cid = cid
        self.opened = time.monotonic()
        self.ended = None       # the handler is done and the socket closed
        self.finished = False   # the session is over: 221 sent, hung up, or the client's FIN seen
        self.chunks = []        # (monotonic time, bytes), as received
        self.commands = []      # (monotonic time, command line without CRLF)
        self.replies = []       # (monotonic time, reply text), as sent
        self.transactions = []
        self.quit = False       # the client sent QUIT
        self.peer_closed = False  # the client closed its side
        self.max_unanswered = 0  # most commands received and not yet answered at once
        self.stalled = False    # went silent at MAIL (ScriptedServer stalls)
        self.buf = b""

    # --- input -----------------------------------------------------------------------------

    def _fill(self, timeout):
        """Reads once. 'data', 'timeout' or 'eof'."""
        try:
            ready, _, _ = select.select([self.sock], [], [], max(timeout, 0))
            if not ready:
                return "timeout"
            data = self.sock.recv(65536)
        except OSError:
            return "eof"
        if not data:
            self.peer_closed = True
            self._finish()
            return "eof"
        with self.server.lock:
            self.chunks.append((time.monotonic(), data))
        self.buf += data
        return "data"

    def _read_line(self):
        """The next CRLF-terminated line (with its CRLF), or None at EOF or after IO_TIMEOUT."""
        deadline = time.monotonic() + IO_TIMEOUT
        while CRLF not in self.buf:
            if self._fill(deadline - time.monotonic()) != "data":
                return None
        line, self.buf = self.buf.split(CRLF, 1)
        return line + CRLF

    def _complete_lines_buffered(self):
        return self.buf.count(CRLF)

    def _note_unanswered(self):
        # The command being answered plus every complete command line already waiting behind it.
        n = 1 + self._complete_lines_buffered()
        self.max_unanswered = max(self.max_unanswered, n)

    def _probe(self, seconds):
        """Gives a client that would not wait for this reply `seconds` to send more."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._fill(deadline - time.monotonic()) == "eof":
                return

    # --- output ----------------------------------------------------------------------------

    def _finish(self):
        with self.server.lock:
            self.finished = True

    def fin_pending(self):
        """The client has closed its side (its FIN is here, behind nothing unread)."""
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _send(self, text):
        with self.server.lock:
            self.replies.append((time.monotonic(), text))
        self.sock.sendall(text.encode())

    # --- protocol --------------------------------------------------------------------------

    def run(self):
        try:
            self._serve()
        except OSError:
            pass
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            self.server._closed(self)

    def _serve(self):
        srv = self.server
        if srv.greeting_gate is not None:
            srv.greeting_gate.wait(IO_TIMEOUT)
        self._send("220 scripted.test ESMTP scripted\r\n")
        txn = None
        while True:
            raw = self._read_line()
            if raw is None:
                return
            line = raw[:-2].decode("latin-1")
            with srv.lock:
                self.commands.append((time.monotonic(), line))
            verb = line.split(" ", 1)[0].upper()
            if verb == "MAIL":
                with srv.lock:
                    stall = srv.stalls_left > 0
                    if stall:
                        srv.stalls_left -= 1
                if stall:
                    # Goes silent: reads whatever comes and answers nothing, until the client
                    # gives up and closes (or IO_TIMEOUT passes).
                    self.stalled = True
                    deadline = time.monotonic() + IO_TIMEOUT
                    while self._fill(deadline - time.monotonic()) == "data":
                        pass
                    return
            if verb == "MAIL" and srv.hold_mail_until_data:
                # RFC 2920: a pipelining client sends MAIL, the RCPTs and DATA without waiting.
                # Hold the MAIL reply until that DATA line is here (or the deadline passes).
                deadline = time.monotonic() + srv.hold_deadline
                while not re.search(rb"(^|\r\n)DATA\r\n", self.buf, re.I):
                    if time.monotonic() > deadline or \
                            self._fill(deadline - time.monotonic()) == "eof":
                        break
            elif srv.lockstep_probe:
                self._probe(srv.lockstep_probe)
            self._note_unanswered()

            if verb == "EHLO":
                caps = ["scripted.test"]
                if srv.pipelining:
                    caps.append("PIPELINING")
                caps += ["8BITMIME", "SIZE 10485760"]
                if srv.smtputf8:
                    caps.append("SMTPUTF8")
                if srv.starttls_stall:
                    caps.append("STARTTLS")
                self._send("".join(f"250{'-' if i + 1 < len(caps) else ' '}{c}\r\n"
                                   for i, c in enumerate(caps)))
            elif verb == "HELO":
                self._send("250 scripted.test\r\n")
            elif verb == "MAIL":
                txn = Transaction(line)
                if srv.hold_mail_until_data:
                    txn.data_seen_before_mail_reply = bool(
                        re.search(rb"(^|\r\n)DATA\r\n", self.buf, re.I))
                with srv.lock:
                    self.transactions.append(txn)
                self._send("250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                m = re.match(r"RCPT TO:<([^>]*)>", line, re.I)
                addr = m.group(1) if m else ""
                if txn is None:
                    self._send("503 5.5.1 Error: need MAIL command\r\n")
                    continue
                with srv.lock:
                    srv.rcpt_attempts[addr] += 1
                    attempt = srv.rcpt_attempts[addr]
                code, text = srv.rcpt_reply(addr, attempt)
                txn.rcpts.append((addr, code))
                self._send(f"{code} {text}\r\n")
            elif verb == "DATA":
                if txn is None or not txn.accepted():
                    if txn is not None:
                        txn.data_reply = 554
                    self._send("554 5.5.1 Error: no valid recipients\r\n")
                    continue
                txn.data_reply = 354
                txn.bytes_before_354 = len(self.buf)
                self._send("354 End data with <CR><LF>.<CR><LF>\r\n")
                raw_data, body = [], []
                while True:
                    l = self._read_line()
                    if l is None:
                        return  # the client went away inside the data
                    raw_data.append(l)
                    if l == b".\r\n":
                        break
                    body.append(l[1:] if l.startswith(b".") else l)
                txn.raw_data = b"".join(raw_data)
                txn.body = b"".join(body)
                with srv.lock:
                    drop = srv.drops_left > 0
                    if drop:
                        srv.drops_left -= 1
                if drop:
                    txn.dropped = True
                    self._finish()
                    self.sock.shutdown(socket.SHUT_RDWR)
                    return
                if srv.data_delay:
                    self._probe(srv.data_delay)  # a slow server: the queue builds up
                if srv.hold_eod_until_next:
                    # RFC 2920 §3.1: a client may put the next MAIL, RCPT and DATA right
                    # behind the end of data. Hold this reply until they are here (or the
                    # deadline passes).
                    deadline = time.monotonic() + srv.hold_deadline
                    pattern = rb"^MAIL [^\r]*\r\n(RCPT [^\r]*\r\n)+DATA\r\n"
                    while not re.search(pattern, self.buf, re.I):
                        if time.monotonic() > deadline or \
                                self._fill(deadline - time.monotonic()) == "eof":
                            break
                    txn.next_before_eod_reply = bool(re.search(pattern, self.buf, re.I))
                txn.final_reply = 250
                if srv.refuse_behind_data and self.buf:
                    # As Haraka 3.3 does: every complete command that came behind the end of
                    # data gets 503, after the end of data's 250, and is dropped.
                    lines = self.buf.count(CRLF)
                    self.buf = self.buf[self.buf.rfind(CRLF) + 2:]
                    with srv.lock:
                        srv.refused_behind_data += lines
                    self._send("250 2.0.0 Ok: queued\r\n" + "503 5.5.1 Bad sequence of commands"
                               " - pipelined after end of DATA\r\n" * lines)
                    txn = None
                    continue
                self._send("250 2.0.0 Ok: queued\r\n")
                txn = None
            elif verb == "RSET":
                txn = None
                self._send("250 2.0.0 Ok\r\n")
            elif verb == "NOOP":
                self._send("250 2.0.0 Ok\r\n")
            elif verb == "STARTTLS" and srv.starttls_stall:
                self._send("220 2.0.0 Ready to start TLS\r\n")
                with srv.lock:
                    srv.starttls_stalled += 1
                # The ClientHello comes and nothing answers it, until the client gives up.
                deadline = time.monotonic() + IO_TIMEOUT
                while self._fill(deadline - time.monotonic()) == "data":
                    pass
                return
            elif verb == "QUIT":
                self.quit = True
                # Over once the 221 is on its way: the client may close and connect anew at
                # once, before this thread gets to close its socket.
                self._finish()
                self._send("221 2.0.0 Bye\r\n")
                return
            else:
                self._send("502 5.5.2 Error: command not recognized\r\n")


def default_rcpt_reply(addr, attempt):
    local = addr.split("@", 1)[0].lower()
    if local.startswith("defer"):
        return (451, "4.2.0 Try again later") if attempt == 1 else (250, "2.1.5 Ok")
    if local.startswith("reject"):
        return 550, "5.1.1 No such user"
    return 250, "2.1.5 Ok"


class ScriptedServer:
    """A scripted SMTP server on a free loopback port; one thread per connection.

    pipelining: offer PIPELINING in the EHLO reply.
    hold_mail_until_data: do not answer MAIL before the transaction's DATA line has arrived
        (at most hold_deadline seconds).
    lockstep_probe: before every reply, wait this long to see whether the client sends more.
    data_delay: seconds before answering the end of data.
    drops: the first `drops` transactions that reach the end of data get no reply: the server
        closes the connection instead.
    stalls: the first `stalls` connections go silent at MAIL: they read on and answer nothing.
    hold_eod_until_next: do not answer an end of data before the next transaction's MAIL, RCPT
        and DATA have arrived (at most hold_deadline seconds).
    greeting_gate: a threading.Event every connection waits for before its greeting.
    refuse_behind_data: commands that came behind an end of data get 503 each (Haraka 3.3).
    starttls_stall: offer STARTTLS, answer it 220, then say nothing more (no TLS handshake): a
        server or middlebox that stalls the handshake.
    max_concurrent: a connection counts as open from its accept until its session is over:
        the server sent 221 or hung up, or the client's FIN arrived (spate shuts a connection
        down as soon as it has the 221, and may connect again before our thread closes).
    """

    def __init__(self, pipelining=True, hold_mail_until_data=False, hold_deadline=2.0,
                 lockstep_probe=0.0, data_delay=0.0, drops=0, rcpt_reply=default_rcpt_reply,
                 smtputf8=False, stalls=0, hold_eod_until_next=False, greeting_gate=None,
                 refuse_behind_data=False, starttls_stall=False):
        self.starttls_stall = starttls_stall
        self.starttls_stalled = 0  # connections stalled after their STARTTLS
        self.smtputf8 = smtputf8
        self.refuse_behind_data = refuse_behind_data
        self.refused_behind_data = 0  # commands answered 503 for where they came
        self.hold_eod_until_next = hold_eod_until_next
        self.greeting_gate = greeting_gate
        self.stalls_left = stalls
        self.pipelining = pipelining
        self.hold_mail_until_data = hold_mail_until_data
        self.hold_deadline = hold_deadline
        self.lockstep_probe = lockstep_probe
        self.data_delay = data_delay
        self.drops_left = drops
        self.rcpt_reply = rcpt_reply
        self.lock = threading.Lock()
        self.rcpt_attempts = collections.Counter()
        self.connections = []
        self.max_concurrent = 0  # most connections open at once, counted at each accept
        self._stopping = False
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()

    def _accept_loop(self):
        while not self._stopping:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                # Open at once: this one and every other whose session is not over (no 221
                # sent, not hung up, no FIN from the client yet).
                live = [c for c in self.connections if not c.finished and not c.fin_pending()]
                conn = ScriptedConnection(self, sock, len(self.connections))
                self.connections.append(conn)
                self.max_concurrent = max(self.max_concurrent, len(live) + 1)
            threading.Thread(target=conn.run, daemon=True).start()

    def _closed(self, conn):
        with self.lock:
            conn.finished = True
            conn.ended = time.monotonic()

    def stop(self):
        self._stopping = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            conns = list(self.connections)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # --- what the tests look at (snapshots, under the lock) -----------------------------------

    def snapshot(self):
        with self.lock:
            return list(self.connections)

    def transactions(self):
        with self.lock:
            return [t for c in self.connections for t in c.transactions]

    def delivered(self):
        """Transactions whose data got the final 250."""
        return [t for t in self.transactions() if t.final_reply == 250]

    def all_closed(self):
        with self.lock:
            return all(c.ended is not None for c in self.connections)


def message(seq, to):
    return (f"From: sender@campaign.test\r\nTo: {to}\r\nSubject: message {seq}\r\n"
            f"X-Seq: {seq}\r\n\r\nHello {seq}.\r\n").encode()


def seq_of(body):
    m = re.search(rb"^X-Seq: (\d+)\r$", body, re.M)
    return int(m.group(1)) if m else None


class DeliveryTest(unittest.TestCase):
    def setUp(self):
        self.started = time.monotonic()
        self.dir = harness.tempdir()
        self.servers = []
        self.spate = None

    def tearDown(self):
        if self.spate:
            self.spate.stop()
        for s in self.servers:
            s.stop()
        if self._failed() and self.spate:
            # Keep the evidence: the spate log and config stay in the temp dir.
            sys.stderr.write(f"\n[kept {self.dir} for inspection: spate.log, spate.toml]\n")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        sys.stderr.write(f"[{self.id().rsplit('.', 1)[-1]}: "
                         f"{time.monotonic() - self.started:.2f}s] ")

    def _failed(self):
        result = getattr(self._outcome, "result", None)
        if result is None:
            return False
        return any(test is self for test, _ in result.errors + result.failures)

    def server(self, **kw):
        s = ScriptedServer(**kw)
        self.servers.append(s)
        return s

    def start_spate(self, routes, delivery=None, sections=None):
        """spate routing each domain of `routes` to its port; `delivery`: more [delivery];
        `sections`: more tables."""
        self.spate = harness.Spate(self.dir, routes, shards=2, delivery=delivery,
                                   log_deliveries=True, sections=sections)
        self.spate.start()
        return self.spate

    def submit(self, messages, connections=1, mail_options=()):
        """Submits [(rcpts, body bytes)] over `connections` smtplib connections; all get 250."""
        errors = []

        def worker(part):
            try:
                with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
                    smtp.ehlo("client.test")
                    for rcpts, body in part:
                        refused = smtp.sendmail("sender@campaign.test", rcpts, body,
                                                mail_options=list(mail_options))
                        if refused:
                            errors.append(f"refused at submission: {refused}")
            except Exception as e:  # reported by the main thread
                errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(messages[i::connections],))
                   for i in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])

    def deliveries(self, domain, outcome):
        return self.spate.metric("spate_deliveries_total", domain=domain, outcome=outcome)

    # ------------------------------------------------------------------------------------------

    def test_pool_limits_and_reuse(self):
        """100 messages, max_connections=3, max_messages_per_connection=10, idle 300ms."""
        domain = "pool.test"
        # A slightly slow server (20ms per end of data) so that mail queues up and the pool
        # has reason to open every connection it may.
        srv = self.server(data_delay=0.02)
        self.start_spate({domain: srv.port},
                         delivery={"max_connections": 3, "max_messages_per_connection": 10,
                                   "idle_timeout": "300ms"})
        # Sample the connection gauge while delivery runs: an operator's view of the pool.
        gauge_max = [0.0]
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                try:
                    gauge_max[0] = max(gauge_max[0], self.spate.metric(
                        "spate_outbound_connections", domain=domain))
                except OSError:
                    pass
                sampling.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            n = 100
            self.submit([([f"user{i}@{domain}"], message(i, f"user{i}@{domain}"))
                         for i in range(n)], connections=4)
            harness.wait_for(lambda: self.deliveries(domain, "delivered") >= n, 60,
                             f"{n} deliveries in /metrics")
        finally:
            sampling.set()
            sampler.join()

        # Everything delivered exactly once.
        seqs = sorted(seq_of(t.body) for t in srv.delivered())
        self.assertEqual(seqs, list(range(n)), "each X-Seq delivered exactly once")
        self.assertEqual(self.deliveries(domain, "delivered"), n)
        self.assertEqual(self.deliveries(domain, "deferred"), 0)
        self.assertEqual(self.deliveries(domain, "failed"), 0)

        # Pool limits, as the server saw them and as /metrics showed them.
        self.assertLessEqual(srv.max_concurrent, 3, "max_connections = 3")
        self.assertLessEqual(gauge_max[0], 3, "spate_outbound_connections never above 3")
        conns = srv.snapshot()
        per_conn = [len(c.transactions) for c in conns]
        self.assertLessEqual(max(per_conn), 10, f"max_messages_per_connection: {per_conn}")
        self.assertGreaterEqual(len(conns), 10, f"connections used: {per_conn}")
        self.assertGreater(srv.max_concurrent, 1, "the pool ran connections in parallel")

        # Idle connections close after idle_timeout, each with QUIT, and the gauge goes to 0.
        harness.wait_for(srv.all_closed, 10, "every delivery connection closed")
        not_quit = [(c.cid, len(c.transactions)) for c in srv.snapshot() if not c.quit]
        self.assertEqual(not_quit, [], "connections (id, transactions) closed without QUIT")
        # A connection that QUIT before its 10th message did so because it sat idle: not
        # before idle_timeout (300ms) after its last reply, and not much later either.
        for c in srv.snapshot():
            if len(c.transactions) < 10:
                quit_at = [t for t, l in c.commands if l.upper() == "QUIT"][0]
                last_reply = [t for t, r in c.replies if not r.startswith("221")][-1]
                self.assertGreaterEqual(quit_at - last_reply, 0.29,
                                        f"connection {c.cid} QUIT before idle_timeout")
                self.assertLess(quit_at - last_reply, 3.0,
                                f"connection {c.cid} idle far beyond idle_timeout")
        harness.wait_for(lambda: self.spate.metric("spate_outbound_connections",
                                                   domain=domain) == 0,
                         10, "spate_outbound_connections 0")
        self.assertEqual(self.spate.metric("spate_spool_messages"), 0)
        self.assertEqual(self.spate.metric("spate_queue_recipients", domain=domain), 0)

    def test_pipelining_sends_mail_rcpts_data_in_one_go(self):
        domain = "pipe.test"
        srv = self.server(pipelining=True, hold_mail_until_data=True, hold_deadline=2.0)
        self.start_spate({domain: srv.port})
        rcpts = [f"a@{domain}", f"b@{domain}", f"c@{domain}"]
        self.submit([(rcpts, message(1, ", ".join(rcpts)))])
        harness.wait_for(lambda: self.deliveries(domain, "delivered") >= 3, 20,
                         "3 deliveries in /metrics")

        txns = srv.transactions()
        self.assertEqual(len(txns), 1, "one transaction for the 3 recipients")
        txn = txns[0]
        self.assertEqual([a for a, _ in txn.rcpts], rcpts)
        self.assertTrue(txn.data_seen_before_mail_reply,
                        "DATA arrived before the reply to MAIL (held up to 2s): "
                        "MAIL, RCPTs and DATA were not pipelined")
        conn = srv.snapshot()[0]
        self.assertGreaterEqual(conn.max_unanswered, 5, "MAIL + 3 RCPT + DATA unanswered at once")
        # The group went out in one write (client_session.h): one chunk on loopback.
        chunk = [d for _, d in conn.chunks if b"MAIL FROM:" in d][0]
        self.assertRegex(chunk, rb"^MAIL FROM:[^\r]*\r\n(RCPT TO:[^\r]*\r\n){3}DATA\r\n$",
                         "MAIL, 3 RCPT and DATA in one chunk")
        # RFC 2920 §3.1: DATA ends the group; the body waits for the 354.
        self.assertEqual(txn.bytes_before_354, 0, "body sent before the 354")
        self.assertEqual(seq_of(txn.body), 1)
        self.assertRegex(txn.mail, r"^MAIL FROM:<sender@campaign\.test>")

    def _pipeline_next_run(self, domain, delivery, **server):
        """5 messages queued for one connection (its greeting held until all are in the spool);
        the server holds each end-of-data reply until the next MAIL/RCPT/DATA are there (1 s at
        most). Returns the server's transactions, in order."""
        gate = threading.Event()
        srv = self.server(pipelining=True, hold_eod_until_next=True,
                          hold_deadline=server.pop("hold_deadline", 1.0), greeting_gate=gate,
                          **server)
        self.start_spate({domain: srv.port}, delivery=dict(max_connections=1, **delivery))
        self.submit([([f"r{i}@{domain}"], message(i, f"r{i}@{domain}")) for i in range(5)])
        gate.set()
        harness.wait_for(lambda: self.deliveries(domain, "delivered") >= 5, 30,
                         "5 deliveries in /metrics")
        self.assertEqual(len(srv.snapshot()), 1, "one connection")
        txns = srv.transactions()
        self.assertEqual(sorted(seq_of(t.body) for t in txns), list(range(5)),
                         "every message once")
        self.assertEqual([t.final_reply for t in txns], [250] * 5)
        return srv, txns

    def test_next_transaction_goes_behind_the_end_of_data(self):
        # One round trip per message on a reused connection (RFC 2920 §3.1, [delivery]
        # pipeline_next, on by default): the next MAIL, RCPT and DATA go out behind the end of
        # data, without waiting for its reply.
        srv, txns = self._pipeline_next_run("next.test", {})
        self.assertEqual([t.next_before_eod_reply for t in txns], [True] * 4 + [False],
                         "each of the first 4 ends of data had the next transaction behind it")
        # ... in the same write as the body's end: one chunk ends ".\r\n" + the next group.
        conn = srv.snapshot()[0]
        behind = [d for _, d in conn.chunks
                  if re.search(rb"\r\n\.\r\nMAIL FROM:[^\r]*\r\nRCPT TO:[^\r]*\r\nDATA\r\n$", d)]
        self.assertEqual(len(behind), 4, "4 chunks of data end + the next MAIL/RCPT/DATA")
        self.assertNotIn("RSET", [c for _, c in conn.commands], "no RSET behind an end of data")
        self.assertRegex(self.spate.metrics(),
                         r'spate_site_pipeline_next_refused\{[^}]*site="[^"]*"[^}]*\} 0\n',
                         "the site's series says it pipelines behind data")

    def test_a_server_that_refuses_commands_behind_data_gets_them_again(self):
        # Haraka 3.3 answers every command behind an end of data with 503: that is nobody's
        # outcome. The same MAIL/RCPT/DATA go again after the end-of-data reply, and the site
        # stops putting anything behind data.
        srv, txns = self._pipeline_next_run("haraka.test", {}, refuse_behind_data=True,
                                            hold_deadline=0.3)
        self.assertEqual(srv.refused_behind_data, 3, "one group refused: MAIL, RCPT, DATA")
        self.assertEqual([t.next_before_eod_reply for t in txns], [True] + [False] * 4)
        self.assertEqual(self.deliveries("haraka.test", "failed"), 0)
        self.assertEqual(self.deliveries("haraka.test", "deferred"), 0)
        self.spate.wait_for_log("refused commands pipelined behind the end of data", 10)
        # ... and /metrics says which site: what an operator looks at to find the sites that
        # cost two round trips a message.
        self.assertEqual(self.spate.metric("spate_site_pipeline_next_refused"), 1)

    def test_a_large_group_of_commands_waits_for_the_end_of_data_reply(self):
        # Behind an end of data only a few KB of commands go (a server reads only so much past
        # it: Haraka 3.3 hangs up over 8 KB); a message with many recipients waits for the
        # reply, and the small one after it goes behind its end of data again.
        domain = "many.test"
        gate = threading.Event()
        srv = self.server(pipelining=True, hold_eod_until_next=True, hold_deadline=1.0,
                          greeting_gate=gate)
        self.start_spate({domain: srv.port}, delivery={"max_connections": 1})
        many = [f"recipient-with-a-long-local-part-{i:03d}@{domain}" for i in range(60)]
        self.submit([([f"a@{domain}"], message(1, "a")), (many, message(2, "many")),
                     ([f"b@{domain}"], message(3, "b"))])
        gate.set()
        harness.wait_for(lambda: self.deliveries(domain, "delivered") >= 62, 30,
                         "62 deliveries in /metrics")
        txns = srv.transactions()
        self.assertEqual([seq_of(t.body) for t in txns], [1, 2, 3])
        self.assertEqual([len(t.accepted()) for t in txns], [1, 60, 1])
        # 1's end of data had nothing behind it (2 is too large to go there); 2's had 3.
        self.assertEqual([t.next_before_eod_reply for t in txns], [False, True, False])

    def test_pipeline_next_off_waits_for_the_end_of_data_reply(self):
        _, txns = self._pipeline_next_run("wait.test", {"pipeline_next": False})
        self.assertEqual([t.next_before_eod_reply for t in txns], [False] * 5)

    def test_without_pipelining_one_command_at_a_time(self):
        domain = "lockstep.test"
        # Before each reply the server waits 100ms for anything more from the client.
        srv = self.server(pipelining=False, lockstep_probe=0.1)
        self.start_spate({domain: srv.port})
        rcpts = [f"a@{domain}", f"b@{domain}", f"c@{domain}"]
        self.submit([(rcpts, message(2, ", ".join(rcpts)))])
        harness.wait_for(lambda: self.deliveries(domain, "delivered") >= 3, 20,
                         "3 deliveries in /metrics")

        txns = srv.transactions()
        self.assertEqual(len(txns), 1)
        self.assertEqual([a for a, _ in txns[0].rcpts], rcpts)
        self.assertEqual(seq_of(txns[0].body), 2)
        conn = srv.snapshot()[0]
        verbs = [l.split(" ", 1)[0].upper() for _, l in conn.commands]
        self.assertEqual(verbs[:6], ["EHLO", "MAIL", "RCPT", "RCPT", "RCPT", "DATA"])
        self.assertEqual(conn.max_unanswered, 1,
                         f"commands sent before the previous reply; commands: {conn.commands}")

    def test_outcomes_delivered_failed_deferred_then_retried(self):
        domain = "outcomes.test"
        srv = self.server()
        senders = self.server()  # the sender's domain: its DSN goes there
        self.start_spate({domain: srv.port, "campaign.test": senders.port},
                         delivery={"retry_base": "200ms", "retry_max": "1s"})
        ok, reject, defer = f"ok1@{domain}", f"reject1@{domain}", f"defer1@{domain}"
        self.submit([([ok, reject, defer], message(3, f"{ok}, {reject}, {defer}"))])

        harness.wait_for(lambda: self.deliveries(domain, "delivered") >= 2, 20,
                         "2 deliveries (ok1, then defer1 on retry)")
        harness.wait_for(lambda: self.spate.metric("spate_spool_messages") == 0, 10,
                         "an empty spool")
        self.assertEqual(self.deliveries(domain, "delivered"), 2)
        self.assertEqual(self.deliveries(domain, "failed"), 1)
        self.assertGreaterEqual(self.deliveries(domain, "deferred"), 1)
        self.assertEqual(self.spate.metric("spate_queue_recipients", domain=domain), 0)

        self.assertEqual(srv.rcpt_attempts[defer], 2, "defer1: 451, then 250 on retry")
        self.assertEqual(srv.rcpt_attempts[reject], 1, "reject1: 550 once, never retried")
        self.assertEqual(srv.rcpt_attempts[ok], 1, "ok1: delivered once")
        tried = [t for c in srv.snapshot() for t, l in c.commands if l == f"RCPT TO:<{defer}>"]
        self.assertGreaterEqual(tried[1] - tried[0], 0.15,
                                "defer1 retried before retry_base (200ms, -20% jitter)")
        delivered = srv.delivered()
        self.assertEqual([t.accepted() for t in delivered], [[ok], [defer]],
                         "the body went to ok1 first, then to defer1 on its retry")
        # reject1 came back to its sender: one DSN from <>, naming it.
        harness.wait_for(lambda: senders.delivered(), 10, "the DSN at the sender's server")
        [dsn] = senders.delivered()
        self.assertEqual(dsn.accepted(), ["sender@campaign.test"])
        self.assertRegex(dsn.mail, r"^MAIL FROM:<> ")
        self.assertIn(b"Final-Recipient: rfc822; reject1@outcomes.test\r\nAction: failed",
                      dsn.body)
        for t in delivered:
            self.assertEqual(seq_of(t.body), 3)
        log = self.spate.wait_for_log(r"deferred .*rcpt=<defer1@outcomes\.test>.*451")
        log = self.spate.wait_for_log(r"failed .*rcpt=<reject1@outcomes\.test>.*550")
        self.assertRegex(log, r"deferred .*rcpt=<defer1@outcomes\.test>.*451")

    def test_dot_stuffing_and_8bit_body_integrity(self):
        domain = "dots.test"
        srv = self.server()
        self.start_spate({domain: srv.port})
        body = CRLF.join([
            b"From: sender@campaign.test",
            b"To: dots@dots.test",
            b"Subject: dots",
            b"X-Seq: 4",
            # Date and Message-ID given, so the only header spate adds is Received: on top.
            b"Date: Sun, 22 Nov 2026 12:00:00 +0000",
            b"Message-ID: <dots.4@campaign.test>",
            b"MIME-Version: 1.0",
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Transfer-Encoding: 8bit",
            b"",
            b".",
            b"..",
            b".x",
            b"a" * 998,
            b"." + b"b" * 997,
            b"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xac \xff\xfe\x80\x7f",
            b" . not at the start",
            b"...",
            b".",
        ]) + CRLF
        self.submit([([f"dots@{domain}"], body)], mail_options=["BODY=8BITMIME"])
        harness.wait_for(lambda: self.deliveries(domain, "delivered") >= 1, 20,
                         "the delivery in /metrics")

        txns = srv.delivered()
        self.assertEqual(len(txns), 1)
        txn = txns[0]
        # spate's own trace field comes first (RFC 5321 §4.4): a Received: line and its
        # continuation lines. The rest must be what the client sent, byte for byte.
        received = re.match(rb"Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", txn.body)
        self.assertIsNotNone(received, "no Received: header first")
        self.assertIn(b"by spate.test (spate)", received.group(0))
        self.assertEqual(txn.body[received.end():], body,
                         "body after un-stuffing differs from what was sent")
        # On the wire: exactly one dot added to every line that starts with one (§4.5.2).
        self.assertEqual(txn.raw_data[received.end():],
                         re.sub(rb"(?m)^\.", b"..", body) + b".\r\n")
        self.assertRegex(txn.mail, r"\bBODY=8BITMIME\b")
        self.assertRegex(txn.mail, r"\bSIZE=\d+\b")

    def test_smtputf8_travels_to_a_server_that_offers_it(self):
        # RFC 6531 §3.4: a message submitted with SMTPUTF8 goes on with SMTPUTF8.
        domain = "utf8.test"
        srv = self.server(smtputf8=True)
        self.start_spate({domain: srv.port})
        rcpt = f"pelé@{domain}"
        body = "Subject: utf8\r\nX-Seq: 6\r\n\r\nhéllo\r\n".encode()
        self.submit([([rcpt], body)], mail_options=["SMTPUTF8"])
        harness.wait_for(lambda: self.deliveries(domain, "delivered") >= 1, 20,
                         "the delivery in /metrics")
        txns = srv.delivered()
        self.assertEqual(len(txns), 1)
        self.assertRegex(txns[0].mail, r"\bSMTPUTF8\b")
        self.assertEqual(self.deliveries(domain, "failed"), 0)

    def test_connection_dropped_after_data_is_retried(self):
        domain = "drop.test"
        # The first transaction to reach the end of data gets no reply: the server hangs up.
        srv = self.server(drops=1)
        self.start_spate({domain: srv.port},
                         delivery={"retry_base": "200ms", "retry_max": "1s"})
        rcpts = [f"x@{domain}", f"y@{domain}"]
        self.submit([(rcpts, message(5, ", ".join(rcpts)))])

        harness.wait_for(lambda: self.deliveries(domain, "delivered") >= 2, 20,
                         "2 deliveries after the retry")
        harness.wait_for(lambda: self.spate.metric("spate_spool_messages") == 0, 10,
                         "an empty spool")
        self.assertEqual(self.deliveries(domain, "deferred"), 2,
                         "both recipients deferred when the connection dropped")
        self.assertEqual(self.deliveries(domain, "delivered"), 2)
        self.assertEqual(self.deliveries(domain, "failed"), 0)

        txns = [t for t in srv.transactions() if t.body is not None]
        self.assertEqual(len(txns), 2, "the body was sent twice: at least once, never lost")
        self.assertTrue(txns[0].dropped)
        self.assertEqual(txns[0].final_reply, None)
        self.assertEqual(txns[1].final_reply, 250)
        self.assertEqual(sorted(txns[1].accepted()), sorted(rcpts))
        self.assertEqual(txns[0].body, txns[1].body)
        self.assertEqual(seq_of(txns[1].body), 5)
        self.spate.wait_for_log(r"deferred .*rcpt=<x@drop\.test>")


    def silent_then_retried(self, domain, delivery):
        """One message to a server whose first connection goes silent at MAIL; returns how long
        that connection waited after the client's last command before the client closed it."""
        srv = self.server(stalls=1)
        self.start_spate({domain: srv.port},
                         delivery={"retry_base": "200ms", "retry_max": "1s", **delivery})
        self.submit([([f"x@{domain}"], message(7, f"x@{domain}"))])
        harness.wait_for(lambda: self.deliveries(domain, "delivered") >= 1, 30,
                         "the delivery after the retry")
        self.assertEqual(self.deliveries(domain, "deferred"), 1)
        self.assertEqual([seq_of(t.body) for t in srv.delivered()], [7])
        self.spate.wait_for_log(rf"deferred .*rcpt=<x@{re.escape(domain)}>")
        first = srv.snapshot()[0]
        self.assertTrue(first.stalled)
        self.assertTrue(first.peer_closed, "spate closed the silent connection")
        return first.ended - first.commands[-1][0]

    def test_silent_server_times_out_and_the_mail_is_retried(self):
        waited = self.silent_then_retried("silent.test",
                                          {"connect_timeout": "1s", "reply_timeout": "1s"})
        self.assertLess(waited, IO_TIMEOUT / 2, "ended by spate's timeout, not the server's")

    # The timer armed at connect (connect_timeout) must give way to a shorter reply_timeout
    # once the first command goes out.
    def test_reply_timeout_shorter_than_connect_timeout_is_kept(self):
        waited = self.silent_then_retried("silent.test",
                                          {"connect_timeout": "5s", "reply_timeout": "1s"})
        self.assertLess(waited, 3.0, "reply_timeout = 1s")

    # RFC 5321 §4.5.3.2: the greeting and the end of data have waits of their own, apart from
    # the one for each command ([delivery] greeting_timeout, data_dot_timeout).
    def seconds_to_deferral(self, domain, srv, seq, timeouts):
        """One message to `srv` with `timeouts` in [delivery] (quick retries): the seconds from
        its submission to its first deferral."""
        self.start_spate({domain: srv.port},
                         delivery={"retry_base": "200ms", "retry_max": "1s", **timeouts})
        start = time.monotonic()
        self.submit([([f"x@{domain}"], message(seq, f"x@{domain}"))])
        harness.wait_for(lambda: self.deliveries(domain, "deferred") >= 1, 20,
                         f"a deferral ({timeouts})")
        return time.monotonic() - start

    def test_a_server_that_never_greets_is_left_after_greeting_timeout(self):
        domain = "mute.test"
        gate = threading.Event()  # no greeting until the test says so
        srv = self.server(greeting_gate=gate)
        waited = self.seconds_to_deferral(domain, srv, 8, {"greeting_timeout": "1s",
                                                           "reply_timeout": "30s"})
        self.assertLess(waited, 10, "greeting_timeout = 1s, not reply_timeout")
        self.spate.wait_for_log(rf"deferred .*rcpt=<x@{re.escape(domain)}>.*timeout", 10)
        gate.set()
        harness.wait_for(lambda: self.deliveries(domain, "delivered") >= 1, 30,
                         "the delivery once the server greets")
        self.assertEqual([seq_of(t.body) for t in srv.delivered()], [8])

    def test_the_end_of_data_reply_is_waited_for_past_reply_timeout(self):
        # The server takes 2 s over the end of data, longer than reply_timeout: cut off there,
        # the message (taken by then) would be sent again; data_dot_timeout (10m) waits for it.
        domain = "slowdot.test"
        srv = self.server(data_delay=2.0)
        self.start_spate({domain: srv.port},
                         delivery={"reply_timeout": "1s", "retry_base": "200ms",
                                   "retry_max": "1s"})
        self.submit([([f"x@{domain}"], message(9, f"x@{domain}"))])
        harness.wait_for(lambda: self.deliveries(domain, "delivered") >= 1, 30, "the delivery")
        self.assertEqual(self.deliveries(domain, "deferred"), 0)
        self.assertEqual(len(srv.transactions()), 1, "sent once")

    def test_data_dot_timeout_bounds_the_wait_for_the_end_of_data_reply(self):
        srv = self.server(data_delay=3.0)
        waited = self.seconds_to_deferral("slowdot2.test", srv, 10, {"data_dot_timeout": "1s",
                                                                     "reply_timeout": "30s"})
        self.assertLess(waited, 2.9, "data_dot_timeout = 1s, before the reply")

    # The TLS handshake has a wait of its own ([tls] handshake_timeout), whatever reply_timeout
    # says: a server that answers STARTTLS and then stalls is left after it, and (opportunistic
    # TLS) the message goes in plaintext on the next connection.
    def test_a_stalled_tls_handshake_is_left_after_handshake_timeout(self):
        domain = "stalltls.test"
        srv = self.server(starttls_stall=True)
        self.start_spate({domain: srv.port},
                         delivery={"reply_timeout": "30s", "retry_base": "200ms",
                                   "retry_max": "1s"},
                         sections={"tls": {"handshake_timeout": "1s"}})
        start = time.monotonic()
        self.submit([([f"x@{domain}"], message(11, f"x@{domain}"))])
        harness.wait_for(lambda: self.deliveries(domain, "delivered") >= 1, 40, "the delivery")
        waited = time.monotonic() - start
        self.assertEqual(srv.starttls_stalled, 1, "one handshake stalled, then plaintext")
        self.assertLess(waited, 10, "handshake_timeout = 1s, not reply_timeout")
        self.assertEqual([seq_of(t.body) for t in srv.delivered()], [11])

    # A connection idle in the pool waits for no reply: reply_timeout does not cut it off, and
    # it leaves with QUIT once idle_timeout passes, even when that is the longer of the two.
    def test_an_idle_timeout_longer_than_reply_timeout_ends_with_quit(self):
        domain = "longidle.test"
        srv = self.server()
        self.start_spate({domain: srv.port},
                         delivery={"reply_timeout": "1s", "idle_timeout": "3s"})
        self.submit([([f"x@{domain}"], message(12, f"x@{domain}"))])
        harness.wait_for(lambda: self.deliveries(domain, "delivered") >= 1, 20, "the delivery")
        harness.wait_for(srv.all_closed, 15, "the connection closed")
        [c] = srv.snapshot()
        self.assertTrue(c.quit, "cut off by reply_timeout while idle, no QUIT")
        quit_at = [t for t, l in c.commands if l.upper() == "QUIT"][0]
        last_reply = [t for t, r in c.replies if not r.startswith("221")][-1]
        self.assertGreaterEqual(quit_at - last_reply, 2.9, "QUIT before idle_timeout (3s)")

    def test_smarthost_takes_every_domain_without_a_route(self):
        routed, smarthost = self.server(), self.server()
        self.start_spate({"routed.test": routed.port},
                         delivery={"smarthost": f"127.0.0.1:{smarthost.port}"})
        self.submit([(["a@routed.test"], message(8, "a@routed.test")),
                     (["b@anywhere.test", "c@elsewhere.test"], message(9, "b, c"))])
        harness.wait_for(lambda: len(routed.delivered()) + len(smarthost.delivered()) >= 3, 20,
                         "3 transactions delivered")
        self.assertEqual([t.accepted() for t in routed.delivered()], [["a@routed.test"]])
        self.assertEqual(sorted(r for t in smarthost.delivered() for r in t.accepted()),
                         ["b@anywhere.test", "c@elsewhere.test"])
        self.assertEqual({seq_of(t.body) for t in smarthost.delivered()}, {9})

    def test_no_route_and_no_smarthost_keeps_the_mail_deferred(self):
        srv = self.server()
        self.start_spate({"routed.test": srv.port})
        self.submit([(["lost@nowhere.test"], message(10, "lost@nowhere.test"))])
        harness.wait_for(lambda: self.deliveries("nowhere.test", "deferred") >= 1, 20,
                         "a deferral for want of a route")
        # No route, no smarthost: MX routing, and a DNS server that never answers (harness).
        self.spate.wait_for_log(r"deferred .*rcpt=<lost@nowhere\.test>.*451 4\.4\.3 MX lookup "
                                r"for nowhere\.test failed")
        self.assertEqual(self.deliveries("nowhere.test", "failed"), 0)
        self.assertEqual(self.spate.metric("spate_spool_messages"), 1, "the mail is kept")
        self.assertEqual(srv.transactions(), [])

    def test_recipients_split_by_max_recipients_per_transaction(self):
        domain = "split.test"
        srv = self.server()
        self.start_spate({domain: srv.port}, delivery={"max_recipients_per_transaction": 2})
        rcpts = [f"r{i}@{domain}" for i in range(5)]
        self.submit([(rcpts, message(11, ", ".join(rcpts)))])
        harness.wait_for(lambda: self.deliveries(domain, "delivered") >= 5, 20,
                         "5 deliveries in /metrics")
        txns = srv.delivered()
        self.assertEqual(sorted(len(t.accepted()) for t in txns), [1, 2, 2],
                         "5 recipients, at most 2 a transaction")
        self.assertEqual(sorted(r for t in txns for r in t.accepted()), rcpts,
                         "each recipient exactly once")
        self.assertEqual({t.body for t in txns}, {txns[0].body}, "the same body each time")
        harness.wait_for(lambda: self.spate.metric("spate_spool_messages") == 0, 10,
                         "an empty spool")

    def test_one_message_to_two_domains_reaches_both(self):
        a, b = self.server(), self.server()
        self.start_spate({"a.test": a.port, "b.test": b.port})
        self.submit([(["x@a.test", "y@b.test", "z@a.test"], message(12, "x, y, z"))])
        harness.wait_for(lambda: len(a.delivered()) + len(b.delivered()) >= 2, 20,
                         "a transaction at each destination")
        self.assertEqual([sorted(t.accepted()) for t in a.delivered()], [["x@a.test", "z@a.test"]])
        self.assertEqual([t.accepted() for t in b.delivered()], [["y@b.test"]])
        self.assertEqual(a.delivered()[0].body, b.delivered()[0].body)
        self.assertEqual(seq_of(a.delivered()[0].body), 12)
        harness.wait_for(lambda: self.spate.metric("spate_spool_messages") == 0, 10,
                         "an empty spool: each domain finished its own recipients")

if __name__ == "__main__":
    unittest.main(verbosity=2)
