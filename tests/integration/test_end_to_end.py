"""The whole path: smtplib over 10 connections -> spate (2 shards, durable spool) -> smtp-sink.

1,000 messages to 3 destination domains, each domain routed to its own smtp-sink. Checks what a
user would: every message arrives exactly once at the sink of its domain, and /metrics shows
1,000 delivered, split correctly by domain.
"""
import os
import shutil
import smtplib
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

DOMAINS = ["alpha.test", "beta.test", "gamma.test"]
MESSAGES = 1000
CONNECTIONS = 10


class EndToEnd(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.sinks = {d: harness.Sink(self.dir, d) for d in DOMAINS}
        self.spate = harness.Spate(self.dir, {d: s.port for d, s in self.sinks.items()},
                                   shards=2)
        self.spate.start()

    def tearDown(self):
        self.spate.stop()
        for s in self.sinks.values():
            s.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def send(self, worker, replies, errors):
        try:
            with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
                smtp.ehlo("client.test")
                for n in range(worker, MESSAGES, CONNECTIONS):
                    domain = DOMAINS[n % len(DOMAINS)]
                    body = (f"From: sender@campaign.test\r\nTo: user{n}@{domain}\r\n"
                            f"Subject: message {n}\r\nX-Seq: {n}\r\n\r\n"
                            f"Hello {n}.\r\n.leading dot line\r\n")
                    smtp.mail("sender@campaign.test")
                    code, _ = smtp.rcpt(f"user{n}@{domain}")
                    self.assertEqual(code, 250)
                    code, reply = smtp.data(body.encode())
                    replies.append((n, code, reply.decode()))
        except Exception as e:  # reported by the main thread
            errors.append(repr(e))

    def test_thousand_messages_three_domains(self):
        replies, errors = [], []
        threads = [threading.Thread(target=self.send, args=(w, replies, errors))
                   for w in range(CONNECTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(replies), MESSAGES)
        for n, code, text in replies:
            self.assertEqual(code, 250, f"message {n}: {text}")
            self.assertRegex(text, r"^2\.0\.0 Ok: queued as [0-9a-f]{16}$")
        self.assertEqual(len({t for _, _, t in replies}), MESSAGES, "queue ids must be unique")

        harness.wait_for(lambda: self.spate.metric("spate_deliveries_total",
                                                   outcome="delivered") >= MESSAGES,
                         120, "1000 deliveries in /metrics")
        harness.wait_for(lambda: sum(len(s.transactions()) for s in self.sinks.values())
                         >= MESSAGES, 30, "1000 dumped transactions")

        self.assertEqual(self.spate.metric("spate_messages_received_total"), MESSAGES)
        self.assertEqual(self.spate.metric("spate_deliveries_total", outcome="delivered"),
                         MESSAGES)
        self.assertEqual(self.spate.metric("spate_deliveries_total", outcome="failed"), 0)
        for i, domain in enumerate(DOMAINS):
            expected = len(range(i, MESSAGES, len(DOMAINS)))
            self.assertEqual(self.spate.metric("spate_deliveries_total", domain=domain,
                                               outcome="delivered"), expected, domain)
            seqs = []
            for rcpts, text in self.sinks[domain].transactions():
                self.assertEqual(len(rcpts), 1)
                self.assertTrue(rcpts[0].endswith("@" + domain), rcpts[0])
                seq = int(text.split("X-Seq: ")[1].split("\r\n")[0].split("\n")[0])
                self.assertIn(f"user{seq}@{domain}", rcpts[0])
                # Dot-stuffing survived both hops: the line starts with one dot again.
                self.assertIn("\n.leading dot line", text)
                seqs.append(seq)
            self.assertEqual(sorted(seqs), list(range(i, MESSAGES, len(DOMAINS))), domain)

        # Connections were reused: far fewer deliveries' worth of connections than messages.
        self.assertEqual(self.spate.metric("spate_spool_messages"), 0)
        self.assertEqual(self.spate.metric("spate_queue_recipients"), 0)

    def test_boringssl_not_openssl(self):
        # BoringSSL is linked; OpenSSL's libssl must never be loaded beside it.
        with open(f"/proc/{self.spate.proc.pid}/maps") as f:
            maps = f.read()
        self.assertIn("/android/libssl.so", maps)
        self.assertNotRegex(maps, r"/libssl\.so\.(1|3)")


class PostmasterAndNul(unittest.TestCase):
    """RFC 5321 §4.5.1: "<Postmaster>" (no domain) is accepted and delivered to [server]
    postmaster; a NUL in the data is refused with 550 5.6.0 (SMTP smuggling one hop on), and
    what the client pipelined behind it is no second message."""

    def setUp(self):
        self.dir = harness.tempdir()
        self.sink = harness.Sink(self.dir, "alpha")
        self.spate = harness.Spate(self.dir, {"alpha.test": self.sink.port}, shards=2,
                                   server={"postmaster": "ops@alpha.test"})
        self.spate.start()

    def tearDown(self):
        self.spate.stop()
        self.sink.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_postmaster_is_delivered_and_nul_is_refused(self):
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
            smtp.ehlo("client.test")
            self.assertEqual(smtp.mail("someone@elsewhere.test")[0], 250)
            self.assertEqual(smtp.rcpt("<Postmaster>")[0], 250)
            self.assertEqual(smtp.data(b"Subject: to the postmaster\r\n\r\nhi\r\n")[0], 250)

            smuggled = (b"Subject: one\r\n\r\nhi\r\n\x00.\r\nMAIL FROM:<evil@x.test>\r\n"
                        b"RCPT TO:<victim@alpha.test>\r\nDATA\r\nSubject: two\r\n\r\nevil\r\n")
            self.assertEqual(smtp.mail("sender@campaign.test")[0], 250)
            self.assertEqual(smtp.rcpt("user@alpha.test")[0], 250)
            code, reply = smtp.data(smuggled)
            self.assertEqual(code, 550)
            self.assertTrue(reply.startswith(b"5.6.0 "), reply)
            self.assertEqual(smtp.noop()[0], 250, "the session goes on")
        text = self.sink.wait_for_rcpt("ops@alpha.test")
        self.assertIn("Subject: to the postmaster", text)
        harness.wait_for(lambda: self.spate.metric("spate_spool_messages") == 0, 30,
                         "an empty spool")
        rcpts = [r for rs, _ in self.sink.transactions() for r in rs]
        self.assertEqual(rcpts, ["ops@alpha.test"], "nothing of the refused message arrived")


if __name__ == "__main__":
    unittest.main(verbosity=2)
