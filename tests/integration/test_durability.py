"""Mail is never lost: accept 200 messages while the destination is down, kill -9 spate,
restart it with the destination up, and every one of the 200 arrives.
"""
import os
import shutil
import smtplib
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

MESSAGES = 200


class Durability(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.sink = None
        self.spate = None
        # The destination while it is down: connections are refused, and no other process can
        # take the port meanwhile.
        self.closed = harness.ClosedPort()

    def tearDown(self):
        if self.spate:
            self.spate.stop()
        if self.sink:
            self.sink.stop()
        self.closed.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_kill9_then_restart_delivers_everything(self):
        self.spate = harness.Spate(self.dir, {"dest.test": self.closed.port}, shards=2)
        self.spate.start()
        queue_ids = []
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
            smtp.ehlo("client.test")
            for n in range(MESSAGES):
                smtp.mail("sender@campaign.test")
                smtp.rcpt(f"user{n}@dest.test")
                code, reply = smtp.data(f"Subject: {n}\r\nX-Seq: {n}\r\n\r\nbody {n}\r\n".encode())
                self.assertEqual(code, 250, reply)
                queue_ids.append(reply)
        # Every 250 was given after a synced commit: the destination never saw anything.
        harness.wait_for(lambda: self.spate.metric("spate_deliveries_total",
                                                   outcome="deferred") >= 1,
                         30, "a deferral against the closed port")
        self.assertEqual(self.spate.metric("spate_deliveries_total", outcome="delivered"), 0)

        self.spate.kill9()

        # Same spool, the route now points at a live sink.
        self.sink = harness.Sink(self.dir, "dest")
        self.spate = harness.Spate(self.dir, {"dest.test": self.sink.port}, shards=2)
        ready = self.spate.start()
        self.assertIn(f"recovered_messages={MESSAGES}", ready)

        harness.wait_for(lambda: len(self.sink.transactions()) >= MESSAGES, 60,
                         f"{MESSAGES} messages at the sink")
        harness.wait_for(lambda: self.spate.metric("spate_spool_messages") == 0, 30,
                         "an empty spool")
        seqs = set()
        for rcpts, text in self.sink.transactions():
            seqs.add(int(text.split("X-Seq: ")[1].split("\n")[0].strip()))
        self.assertEqual(seqs, set(range(MESSAGES)))
        self.assertEqual(self.spate.metric("spate_deliveries_total", outcome="delivered"),
                         MESSAGES)

    def test_sigterm_keeps_queue(self):
        # A clean stop with mail still queued keeps it: the next start recovers it.
        self.spate = harness.Spate(self.dir, {"dest.test": self.closed.port}, shards=1)
        self.spate.start()
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
            for n in range(5):
                smtp.sendmail("s@campaign.test", [f"u{n}@dest.test"], f"X-Seq: {n}\r\n\r\nx\r\n")
        self.assertEqual(self.spate.stop(), 0)
        self.spate = harness.Spate(self.dir, {"dest.test": self.closed.port}, shards=1)
        self.assertIn("recovered_messages=5", self.spate.start())


    def test_full_disk_is_answered_451_and_nothing_is_half_stored(self):
        # RFC 5321 §4.2.3: 451 local error in processing; the client keeps the message.
        self.sink = harness.Sink(self.dir, "dest")
        # Every body in RocksDB ("off"), so that the write-ahead log is what fills (the body
        # log's own faults: test_faultfs.py).
        self.spate = harness.Spate(self.dir, {"dest.test": self.sink.port}, shards=1,
                                   may_fill_disk=True, spool={"body_log_min_size": "off"})
        self.spate.start()
        # A large first message, so the write-ahead log is the spool's largest file.
        big = "Subject: big\r\n\r\n" + ("x" * 998 + "\r\n") * 2048
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
            smtp.sendmail("s@campaign.test", ["big@dest.test"], big)
            self.sink.wait_for_rcpt("big@dest.test")
            harness.wait_for(lambda: self.spate.metric("spate_spool_messages") == 0, 30,
                             "the first message done with")
            self.spate.fill_disk()
            self.assertEqual(smtp.mail("s@campaign.test")[0], 250)
            self.assertEqual(smtp.rcpt("full@dest.test")[0], 250)
            code, reply = smtp.data(b"Subject: full\r\n\r\nnowhere to go\r\n")
            self.assertEqual((code, reply), (451, b"4.3.0 Error: queue file write error"))
            self.assertEqual(smtp.noop()[0], 250, "the session goes on")
        self.assertEqual(self.spate.metric("spate_messages_received_total"), 1)
        self.assertEqual(self.spate.stop(), 0, "a clean stop, the failed write notwithstanding")
        log = self.spate.read_log()
        self.assertRegex(log, r"submission: 1 messages refused, their commit failed")
        self.assertEqual(log.count("spool: refusing new mail"), 1, "said once, not per message")
        # Nothing of the refused message was stored: a restart finds an empty spool.
        self.spate = harness.Spate(self.dir, {"dest.test": self.sink.port}, shards=1)
        self.assertIn("recovered_messages=0", self.spate.start())
        self.assertEqual([r for r, _ in self.sink.transactions() if "full@dest.test" in r], [])

if __name__ == "__main__":
    unittest.main(verbosity=2)
