"""Interoperability and limits of the submission port, against the real binary.

Real clients: swaks (pipelining, smuggling, size and recipient limits), Python's smtplib
(SMTPUTF8, RFC 6531), Postfix's smtp-source under load, and raw sockets where the bytes and their
timing matter (connection limits, a client that trickles its data, a client that talks before
the greeting). Everything spate accepts goes to Postfix's smtp-sink, which dumps each transaction.
"""
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import time
import unittest
from email.message import EmailMessage

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

DEST = "dest.test"  # routed to smtp-sink
UTF8_DEST = "例子.test"  # an internationalized domain, routed to smtp-sink as written
SWAKS = shutil.which("swaks") or "/usr/bin/swaks"
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
MAX_SIZE = 10000


class Wire:
    """A raw SMTP client: reads replies byte by byte, so nothing is read ahead of the reply
    asked for."""

    def __init__(self, port, source="127.0.0.1", host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=10,
                                             source_address=(source, 0))

    def line(self):
        buf = b""
        while not buf.endswith(b"\r\n"):
            c = self.sock.recv(1)
            if not c:
                raise EOFError(f"connection closed after {buf!r}")
            buf += c
        return buf.decode()

    def reply(self):
        """(code, last line) of one possibly multi-line reply."""
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return int(lines[-1][:3]), lines[-1].rstrip("\r\n")

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def closed(self, seconds=10):
        """True once the server closes (FIN or reset) within `seconds`."""
        self.sock.settimeout(seconds)
        try:
            while True:
                if not self.sock.recv(4096):
                    return True
        except ConnectionResetError:
            return True
        except (socket.timeout, TimeoutError):
            return False
        finally:
            self.sock.settimeout(10)

    def silent(self, seconds):
        """True when the server sends nothing (and does not close) for `seconds`."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(100)
        except (socket.timeout, TimeoutError):
            return True
        finally:
            self.sock.settimeout(10)
        raise AssertionError(f"unexpected bytes from the server: {data!r}")

    def close(self):
        self.sock.close()


class Base(unittest.TestCase):
    SHARDS = 2
    SERVER = {}

    @classmethod
    def setUpClass(cls):
        cls.dir = harness.tempdir()
        cls.sink = harness.Sink(cls.dir, "dest")
        # The senders' domain goes to the sink too: the DSNs of what fails land there.
        cls.spate = harness.Spate(cls.dir, {DEST: cls.sink.port, UTF8_DEST: cls.sink.port,
                                            "src.test": cls.sink.port},
                                  shards=cls.SHARDS, server=cls.SERVER, log_deliveries=True)
        cls.spate.start()
        cls.port = cls.spate.smtp_port

    @classmethod
    def tearDownClass(cls):
        cls.spate.stop()
        cls.sink.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def delivered(self, rcpt):
        """The sink's dump of the transaction to `rcpt`, once it is there."""
        return self.sink.wait_for_rcpt(rcpt)

    def not_delivered(self, *rcpts):
        """Nothing reached the sink for `rcpts` once spate's queue is empty: what it took is
        delivered, and what it refused was never queued."""
        harness.wait_for(lambda: self.spate.metric("spate_queue_recipients") == 0, 30,
                         "an empty queue")
        for got, _ in self.sink.transactions():
            for r in rcpts:
                self.assertNotIn(r, got)

    def swaks(self, *args, timeout=60):
        r = subprocess.run(
            [SWAKS, "--server", "127.0.0.1", "--port", str(self.port), "--helo", "client.test",
             "--from", "sender@src.test", "--timeout", "20", *args],
            capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout + r.stderr

    def wire(self, source="127.0.0.1"):
        w = Wire(self.port, source)
        self.addCleanup(w.close)
        return w


class Interop(Base):
    SERVER = {"max_message_size": MAX_SIZE, "max_recipients": 100}

    def test_swaks_pipelined_message_is_delivered(self):
        rc, out = self.swaks("--pipeline", "--to", f"piped@{DEST}",
                             "--body", "pipelined through swaks")
        self.assertEqual(rc, 0, out)
        self.assertIn("250-PIPELINING", out)
        self.assertRegex(out, r"<- +250 2\.0\.0 Ok: queued as")
        self.assertIn("pipelined through swaks", self.delivered(f"piped@{DEST}"))

    def test_swaks_bare_lf_smuggling_is_refused(self):
        # The SMTP smuggling payload: "\n.\n" ends the data for a server that takes a bare LF
        # as a line end, and what follows would be a second, forged transaction.
        path = os.path.join(self.dir, "smuggle.eml")
        with open(path, "wb") as f:
            f.write(b"Subject: smuggling\r\n\r\nfirst\n.\nMAIL FROM:<admin@src.test>\r\n"
                    b"RCPT TO:<smuggled@" + DEST.encode() + b">\r\nDATA\r\nforged\r\n.\r\n")
        rc, out = self.swaks("--to", f"carrier@{DEST}", "--no-data-fixup", "--data", "@" + path)
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, r"<\*\* +550 5\.6\.0")
        self.assertNotIn("queued as", out)
        self.not_delivered(f"carrier@{DEST}", f"smuggled@{DEST}")

    def test_swaks_message_over_max_message_size_is_refused(self):
        rc, out = self.swaks("--to", f"big@{DEST}", "--body", "x" * 60 + ("\n" + "y" * 70) * 200)
        self.assertNotEqual(rc, 0, out)
        self.assertIn(f"250-SIZE {MAX_SIZE}", out)
        self.assertRegex(out, r"<\*\* +552 5\.3\.4")
        self.not_delivered(f"big@{DEST}")

    def test_swaks_quit_after_rcpt_sends_nothing(self):
        rc, out = self.swaks("--to", f"quitter@{DEST}", "--quit-after", "RCPT")
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"<- +250 2\.1\.5")
        self.assertRegex(out, r"<- +221 2\.0\.0")
        self.assertNotIn("DATA", out.split("RCPT TO", 1)[1])
        self.not_delivered(f"quitter@{DEST}")

    def test_swaks_101st_recipient_gets_452_and_100_are_delivered(self):
        rcpts = [f"r{i}@{DEST}" for i in range(101)]
        # The To: header swaks would write lists them all, past the 1000-octet line limit.
        rc, out = self.swaks("--to", ",".join(rcpts), "--header", f"To: hundred@{DEST}",
                             "--body", "to a hundred")
        self.assertRegex(out, r"<- +250 2\.0\.0 Ok: queued as", out[-2000:])
        self.assertRegex(out, r"RCPT TO:<r100@dest\.test>\s*\n<\*\* +452 4\.5\.3")
        self.assertEqual(len([l for l in out.splitlines() if "250 2.1.5" in l]), 100)

        def all_delivered():
            got = [r for rs, _ in self.sink.transactions() for r in rs if r in rcpts]
            return got if len(got) >= 100 else None
        got = harness.wait_for(all_delivered, 30, "100 recipients at the sink")
        self.assertEqual(sorted(got), sorted(rcpts[:100]))
        self.not_delivered(rcpts[100])

    def test_smtplib_smtputf8_accepted_and_not_downgraded(self):
        # Accepted with SMTPUTF8 on the submission port. smtp-sink does not offer SMTPUTF8, so
        # RFC 6531 §3.4 forbids sending it there: each recipient fails with 550 5.6.7 (the
        # scripted peer in test_delivery.py, which offers it, gets it with SMTPUTF8).
        for n, (rcpt, domain) in enumerate([(f"pelé@{DEST}", DEST),
                                            (f"用户@{UTF8_DEST}", UTF8_DEST)]):
            msg = EmailMessage()
            msg["From"] = "sender@src.test"
            msg["To"] = rcpt
            msg["Subject"] = f"internationalized {n}"
            msg.set_content("héllo wörld\n")
            with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
                s.ehlo("client.test")
                self.assertTrue(s.has_extn("smtputf8"))
                # smtplib adds SMTPUTF8 and BODY=8BITMIME itself for these addresses: MAIL
                # carries SMTPUTF8 twice.
                refused = s.send_message(msg, "sender@src.test", [rcpt],
                                         mail_options=["SMTPUTF8"])
                self.assertEqual(refused, {})
            line = re.compile(f"failed id=\\S+ rcpt=<{rcpt}> domain={domain} .*5\\.6\\.7")
            harness.wait_for(lambda: line.search(self.spate.read_log()), 30,
                             f"the 5.6.7 failure log line for {rcpt}")
        self.assertEqual(len([t for rs, t in self.sink.transactions()
                              if "Subject: internationalized" in t and
                              rs != ["sender@src.test"]]), 0)
        # Each came back to its sender in a DSN (from <>, with the original's headers).
        harness.wait_for(lambda: len([t for rs, t in self.sink.transactions()
                                      if rs == ["sender@src.test"] and "Status: 5.6.7" in t and
                                      "Subject: internationalized" in t]) == 2, 30,
                         "two DSNs with Status 5.6.7")

    def test_utf8_address_without_smtputf8_is_refused_with_5_6_7(self):
        # smtplib encodes commands as ASCII unless SMTPUTF8 is on: the UTF-8 bytes go raw.
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
            s.ehlo("client.test")
            code, text = s.mail("sender@src.test")
            self.assertEqual(code, 250, text)
            s.send("RCPT TO:<pelé-plain@dest.test>\r\n".encode())
            code, text = s.getreply()
            self.assertEqual(code, 553, text)
            self.assertTrue(text.startswith(b"5.6.7"), text)
            s.rset()
            s.send("MAIL FROM:<pelé@src.test>\r\n".encode())
            code, text = s.getreply()
            self.assertEqual(code, 550, text)
            self.assertTrue(text.startswith(b"5.6.7"), text)
        self.not_delivered("pelé-plain@dest.test")


class Load(Base):
    """smtp-source: 500 messages over 10 parallel sessions, each its own connection."""

    def test_smtp_source_500_messages(self):
        before = self.spate.metric("spate_messages_received_total")
        r = subprocess.run(
            [SMTP_SOURCE, "-s", "10", "-m", "500", "-l", "1000", "-f", "sender@src.test",
             "-t", f"load@{DEST}", "-M", "client.test", f"127.0.0.1:{self.port}"],
            capture_output=True, text=True, timeout=240)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.spate.metric("spate_messages_received_total") - before, 500)

        def count():
            n = sum(1 for rs, _ in self.sink.transactions() if f"load@{DEST}" in rs)
            return n if n >= 500 else None
        harness.wait_for(count, 120, "500 transactions at the sink")
        self.not_delivered()  # queue drained: nothing more is on its way
        self.assertEqual(sum(1 for rs, _ in self.sink.transactions() if f"load@{DEST}" in rs),
                         500)


class PerClientLimit(Base):
    """max_connections_per_client = 3 over 2 shards: the count is exact across shards."""
    SERVER = {"max_connections_per_client": 3}

    def test_fourth_connection_refused_until_one_closes(self):
        before = self.spate.metric("spate_connections_refused_total")
        open_ = [self.wire() for _ in range(3)]
        for w in open_:
            self.assertEqual(w.reply()[0], 220)
        fourth = self.wire()
        self.assertEqual(fourth.reply(),
                         (421, "421 4.7.0 spate.test Too many connections from your address"))
        self.assertTrue(fourth.closed())
        self.assertEqual(self.spate.metric("spate_connections_refused_total") - before, 1)
        # Another client address (all of 127/8 is loopback) has its own count.
        other = self.wire("127.0.0.2")
        self.assertEqual(other.reply()[0], 220)

        self.assertEqual(open_[0].cmd("QUIT")[0], 221)
        self.assertTrue(open_[0].closed())

        # The server counts the close when it sees it: a new connection is accepted soon after.
        def accepted():
            w = Wire(self.port)
            try:
                code, _ = w.reply()
                if code == 220:
                    self.addCleanup(w.close)
                    return w
            except (EOFError, ConnectionResetError):
                pass
            w.close()
            return None
        w = harness.wait_for(accepted, 10, "a connection accepted after one closed")
        self.assertEqual(w.cmd("EHLO client.test")[0], 250)


class TotalLimit(Base):
    """max_connections = 2 on one shard (each shard takes ceil(max/shards))."""
    SHARDS = 1
    SERVER = {"max_connections": 2, "max_connections_per_client": 0}

    def test_third_connection_refused(self):
        first, second = self.wire(), self.wire("127.0.0.2")
        self.assertEqual(first.reply()[0], 220)
        self.assertEqual(second.reply()[0], 220)
        third = self.wire("127.0.0.3")
        self.assertEqual(third.reply(), (421, "421 4.7.0 spate.test Too many connections"))
        self.assertTrue(third.closed())
        # Those already in are served as usual.
        self.assertEqual(first.cmd("EHLO client.test")[0], 250)


class SlowClient(Base):
    SERVER = {"min_data_rate": 1000, "data_rate_grace": "1s"}

    def trickle(self, w):
        """Sends one octet every 0.5 s until the server answers; its answer."""
        deadline = time.monotonic() + 30
        w.sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                w.sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                first = w.sock.recv(1)
            except (socket.timeout, TimeoutError):
                continue
            w.sock.settimeout(10)
            if not first:
                raise EOFError("closed without a reply")
            return first.decode() + w.line()
        raise AssertionError("no reply to a client sending 2 octets/s")

    def start_transaction(self, rcpt):
        w = self.wire()
        self.assertEqual(w.reply()[0], 220)
        self.assertEqual(w.cmd("EHLO client.test")[0], 250)
        self.assertEqual(w.cmd("MAIL FROM:<sender@src.test>")[0], 250)
        self.assertEqual(w.cmd(f"RCPT TO:<{rcpt}>")[0], 250)
        return w

    def test_data_trickle_is_dropped_with_421(self):
        w = self.start_transaction(f"slow-data@{DEST}")
        self.assertEqual(w.cmd("DATA")[0], 354)
        w.sock.sendall(b"Subject: slow\r\n\r\n")
        self.assertEqual(self.trickle(w), "421 4.4.2 spate.test Error: data rate too low\r\n")
        self.assertTrue(w.closed())
        self.not_delivered(f"slow-data@{DEST}")

    def test_bdat_trickle_is_dropped_with_421(self):
        w = self.start_transaction(f"slow-bdat@{DEST}")
        w.sock.sendall(b"BDAT 1000 LAST\r\nSubject: slow\r\n\r\n")
        self.assertEqual(self.trickle(w), "421 4.4.2 spate.test Error: data rate too low\r\n")
        self.assertTrue(w.closed())
        self.not_delivered(f"slow-bdat@{DEST}")

    def test_steady_client_past_the_grace_is_served(self):
        # About 20 000 octets/s for 2.5 s: well over the minimum, well past the grace.
        w = self.start_transaction(f"steady@{DEST}")
        self.assertEqual(w.cmd("DATA")[0], 354)
        w.sock.sendall(b"Subject: steady\r\n\r\n")
        line = b"y" * 78 + b"\r\n"
        for _ in range(10):
            w.sock.sendall(line * 60)
            time.sleep(0.25)
        code, text = w.cmd(".")
        self.assertEqual(code, 250, text)
        self.assertIn("Subject: steady", self.delivered(f"steady@{DEST}"))


class GreetingDelay(Base):
    SERVER = {"greeting_delay": "1s"}

    def test_client_talking_first_gets_554(self):
        w = self.wire()
        w.sock.sendall(b"EHLO impatient.test\r\n")
        self.assertEqual(w.reply(),
                         (554, "554 5.5.0 SMTP protocol violation: input before greeting"))
        self.assertTrue(w.closed())

    def test_patient_client_is_greeted_after_the_delay(self):
        w = self.wire()
        self.assertTrue(w.silent(0.5), "no greeting before the delay")
        self.assertEqual(w.reply(), (220, "220 spate.test ESMTP spate"))
        self.assertEqual(w.cmd("EHLO client.test")[0], 250)
        self.assertEqual(w.cmd("MAIL FROM:<sender@src.test>")[0], 250)
        self.assertEqual(w.cmd(f"RCPT TO:<patient@{DEST}>")[0], 250)
        self.assertEqual(w.cmd("DATA")[0], 354)
        code, text = w.cmd("Subject: patient\r\n\r\nwaited\r\n.")
        self.assertEqual(code, 250, text)
        self.assertIn("waited", self.delivered(f"patient@{DEST}"))


class IdleClient(Base):
    """[server] command_timeout: a client that stops talking is told so and let go (RFC 5321
    §4.5.3.2: 421, then close), mid-transaction too, and what it left unfinished is not queued."""
    SERVER = {"command_timeout": "1s"}

    def test_silent_after_greeting_gets_421(self):
        w = self.wire()
        self.assertEqual(w.reply()[0], 220)
        self.assertEqual(w.cmd("EHLO client.test")[0], 250)
        self.assertEqual(w.reply(), (421, "421 4.4.2 spate.test Error: timeout exceeded"))
        self.assertTrue(w.closed())

    def test_silent_inside_the_data_gets_421_and_nothing_is_queued(self):
        w = self.wire()
        self.assertEqual(w.reply()[0], 220)
        self.assertEqual(w.cmd("EHLO client.test")[0], 250)
        self.assertEqual(w.cmd("MAIL FROM:<sender@src.test>")[0], 250)
        self.assertEqual(w.cmd(f"RCPT TO:<idle@{DEST}>")[0], 250)
        self.assertEqual(w.cmd("DATA")[0], 354)
        w.sock.sendall(b"Subject: never finished\r\n\r\n")
        self.assertEqual(w.reply(), (421, "421 4.4.2 spate.test Error: timeout exceeded"))
        self.assertTrue(w.closed())
        self.not_delivered(f"idle@{DEST}")

    def test_a_client_that_keeps_talking_is_not_timed_out(self):
        # Each command comes within the timeout; together they take well over it.
        w = self.wire()
        self.assertEqual(w.reply()[0], 220)
        for _ in range(5):
            time.sleep(0.4)
            self.assertEqual(w.cmd("NOOP")[0], 250)
        self.assertEqual(w.cmd("QUIT")[0], 221)


class Ipv6Client(unittest.TestCase):
    """An IPv6 client is counted by its /64 (one host usually has a whole /64 to pick addresses
    from), and its trace header names it as an IPv6 address literal (RFC 5321 §4.1.3)."""

    @classmethod
    def setUpClass(cls):
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
        except OSError as e:
            raise unittest.SkipTest(f"no IPv6 loopback here: {e}")
        cls.dir = harness.tempdir()
        cls.sink = harness.Sink(cls.dir, "dest")
        cls.spate = harness.Spate(cls.dir, {DEST: cls.sink.port}, listen="[::1]:0",
                                  server={"max_connections_per_client": 1,
                                          "relay_networks": ["::1/128"]})
        cls.spate.start()

    @classmethod
    def tearDownClass(cls):
        cls.spate.stop()
        cls.sink.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def wire(self):
        w = Wire(self.spate.smtp_port, source="::1", host="::1")
        self.addCleanup(w.close)
        return w

    def test_second_connection_from_the_same_64_is_refused(self):
        first = self.wire()
        self.assertEqual(first.reply()[0], 220)
        second = self.wire()
        self.assertEqual(second.reply(),
                         (421, "421 4.7.0 spate.test Too many connections from your address"))
        self.assertTrue(second.closed())
        self.assertEqual(first.cmd("EHLO client.test")[0], 250)
        self.assertEqual(first.cmd("MAIL FROM:<sender@src.test>")[0], 250)
        self.assertEqual(first.cmd(f"RCPT TO:<six@{DEST}>")[0], 250)
        self.assertEqual(first.cmd("DATA")[0], 354)
        self.assertEqual(first.cmd("Subject: v6\r\n\r\nover IPv6\r\n.")[0], 250)
        self.assertRegex(self.sink.wait_for_rcpt(f"six@{DEST}"),
                         r"Received: from client\.test \(\[IPv6:::1\]\)")


if __name__ == "__main__":
    unittest.main(verbosity=2)
