"""HTTP injection (issue 13) against the real daemon: POST /api/inject/v1 in KumoMTA's shape.
Each recipient gets its own templated message, DKIM-signed (verified by dkimpy) and tagged with
its campaign as SMTP mail is; a kill -9 right after the 200 loses nothing; an Idempotency-Key
replays the first answer and queues nothing twice, also after a restart; malformed JSON, a bad
address and a request past a limit get 400/413 naming what is wrong; a spool that sheds load
answers 503. Loopback only; every wait has a deadline.
"""
import email
import email.policy
import json
import os
import shutil
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from test_dkim import MessageSink, make_keys, verify  # noqa: E402


class Inject(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.sink = MessageSink()
        self.spate = None

    def tearDown(self):
        if self.spate:
            self.spate.stop()
        self.sink.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, routes=None, extra_config="", **kw):
        self.spate = harness.Spate(self.dir, routes or {"dest.test": self.sink.port},
                                   server={"campaign_header": "X-Campaign"}, **kw)
        if extra_config:
            with open(self.spate.config, "a") as f:
                f.write(extra_config)
        ready = self.spate.start()
        self.address = ready.split(" admin=")[1].split()[0]

    def post(self, body, key=None, raw=None):
        data = raw if raw is not None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{self.address}/api/inject/v1", data=data,
                                     method="POST", headers={"Content-Type": "application/json"})
        if key:
            req.add_header("Idempotency-Key", key)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read()), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read()), dict(e.headers)

    def delivered(self, n):
        harness.wait_for(lambda: len(self.sink.messages) >= n, 30, f"{n} delivered")
        return self.sink.messages

    def test_each_recipient_gets_its_own_signed_and_tagged_message(self):
        keys_dir = os.path.join(self.dir, "keys")
        os.makedirs(keys_dir)
        _, ed, _, ed_txt = make_keys(keys_dir)
        self.start(extra_config=f'\n[[dkim]]\ndomain = "shop.test"\nselector = "s2"\nkey = "{ed}"\n')
        status, body, _ = self.post({
            "envelope_sender": "bounces@shop.test",
            "content": {
                "from": {"email": "news@shop.test", "name": "Shop News"},
                "subject": "Hello {{ name }}",
                "text_body": "Dear {{ name }}, your code is {{ code }} at {{ brand }}.",
                "html_body": "<p>Dear {{ name }}</p>",
                "headers": {"X-Campaign": "spring"},
            },
            "recipients": [
                {"email": "ann@dest.test", "name": "Ann", "substitutions": {"code": "A1"}},
                {"email": "bob@dest.test", "name": "Bob <&>"},
            ],
            "substitutions": {"code": "none", "brand": "Shop"},
        })
        self.assertEqual(status, 200, body)
        self.assertEqual((body["success_count"], body["fail_count"]), (2, 0))
        messages = self.delivered(2)
        by = {rcpts[0]: data for rcpts, data in messages}
        self.assertEqual(sorted(by), ["ann@dest.test", "bob@dest.test"])
        for rcpt, data in by.items():
            parsed = email.message_from_bytes(data, policy=email.policy.default)
            name = "Ann" if rcpt == "ann@dest.test" else "Bob <&>"
            self.assertEqual(parsed["Subject"], f"Hello {name}")
            self.assertIn(rcpt, parsed["To"])
            text = parsed.get_body(("plain",)).get_content()
            html = parsed.get_body(("html",)).get_content()
            self.assertIn(f"Dear {name}, your code is {'A1' if rcpt.startswith('ann') else 'none'}"
                          " at Shop.", text)
            if rcpt.startswith("bob"):
                self.assertIn("Bob &lt;&amp;&gt;", html, "HTML escaped in the HTML part only")
            self.assertIsNotNone(parsed["Date"])
            self.assertIsNotNone(parsed["Message-ID"])
            # The trace names the HTTP client, as an SMTP one's does (RFC 5321 §4.4).
            received = parsed.get_all("Received")[0]
            self.assertTrue(received.startswith("from [127.0.0.1] ([127.0.0.1]) by "), received)
            self.assertIn(" with HTTP; ", received)
            self.assertTrue(data.startswith(b"DKIM-Signature:") or b"\r\nDKIM-Signature:" in data)
            verdicts = verify(data, {"s2._domainkey.shop.test": ed_txt})
            self.assertEqual([v[3] for v in verdicts], [True], verdicts)
        # Tagged with its campaign, as SMTP mail is.
        harness.wait_for(lambda: self.records_with("Delivery", "spring") == 2, 20,
                         "two deliveries of campaign spring on record")
        self.assertEqual(self.records_with("Reception", "spring"), 2)

    def records_with(self, type_, campaign):
        try:
            with open(self.spate.records_path) as f:
                return sum(1 for r in map(json.loads, f)
                           if r["type"] == type_ and r.get("campaign") == campaign)
        except FileNotFoundError:
            return 0

    def test_a_whole_message_is_templated_and_kill9_after_the_200_loses_nothing(self):
        closed = harness.ClosedPort()  # nothing is delivered before the kill
        try:
            self.start(routes={"dest.test": closed.port})
            rcpts = [{"email": f"u{i}@dest.test", "substitutions": {"n": str(i)}}
                     for i in range(50)]
            status, body, _ = self.post({
                "envelope_sender": "s@src.test",
                "content": "From: s@src.test\nSubject: number {{ n }}\n\nHi {{ email }}, you are {{ n }}\n",
                "recipients": rcpts})
            self.assertEqual((status, body["success_count"]), (200, 50), body)
            self.spate.kill9()
        finally:
            closed.close()
        # Started again, now with somewhere to deliver: every one of the 50 arrives.
        self.spate = None
        self.start()
        messages = self.delivered(50)
        self.assertEqual(len(messages), 50)
        seen = set()
        for rcpts, data in messages:
            n = rcpts[0][1:rcpts[0].index("@")]
            self.assertIn(f"Subject: number {n}\r\n".encode(), data)
            self.assertIn(f"Hi {rcpts[0]}, you are {n}\r\n".encode(), data)
            seen.add(rcpts[0])
        self.assertEqual(len(seen), 50)

    def test_an_idempotency_key_replays_the_first_answer_and_queues_nothing_twice(self):
        self.start()
        req = {"envelope_sender": "s@src.test",
               "content": "Subject: once\r\n\r\nonce\r\n",
               "recipients": [{"email": "a@dest.test"}, {"email": "b@dest.test"}]}
        first = self.post(req, key="order-4711")
        self.assertEqual(first[0], 200, first[1])
        self.delivered(2)
        again = self.post(req, key="order-4711")
        self.assertEqual(again[:2], first[:2])
        self.assertEqual(again[2].get("Idempotent-Replayed"), "true")
        other = self.post(req, key="order-4712")
        self.assertEqual(other[0], 200)
        self.delivered(4)
        # A restart: the key is kept in the spool.
        self.assertEqual(self.spate.stop(), 0)
        self.start()
        self.assertEqual(self.post(req, key="order-4711")[:2], first[:2])
        time.sleep(1.5)
        self.assertEqual(len(self.sink.messages), 4, "nothing queued twice")
        status, body, _ = self.post(req, key="bad key with spaces")
        self.assertEqual((status, body["field"]), (400, "Idempotency-Key"))

    def test_malformed_input_and_limits(self):
        self.start(sections={"inject": {"max_recipients": 3, "max_request_size": 4096}})
        status, body, _ = self.post(None, raw=b"{not json")
        self.assertEqual((status, body["field"]), (400, "body"))
        status, body, _ = self.post({"envelope_sender": "s@src.test", "content": "Subject: x\r\n\r\nx",
                                     "recipients": [{"email": "ok@dest.test"},
                                                    {"email": "not an address"}]})
        self.assertEqual((status, body["field"]), (400, "recipients[1].email"))
        self.assertIn("not an address", body["error"])
        status, body, _ = self.post({"content": "x", "recipients": [{"email": "a@dest.test"}]})
        self.assertEqual((status, body["field"]), (400, "envelope_sender"))
        status, body, _ = self.post({"envelope_sender": "s@src.test", "content": "x",
                                     "recipients": [{"email": f"u{i}@dest.test"}
                                                    for i in range(4)]})
        self.assertEqual((status, body["field"]), (413, "recipients"))
        big = {"envelope_sender": "s@src.test", "content": "x" * 5000,
               "recipients": [{"email": "a@dest.test"}]}
        req = urllib.request.Request(f"http://{self.address}/api/inject/v1",
                                     data=json.dumps(big).encode(), method="POST")
        try:
            urllib.request.urlopen(req, timeout=30)
            self.fail("a request past max_request_size was taken")
        except urllib.error.HTTPError as e:
            self.assertEqual(e.code, 413)
        # Nothing of those was queued.
        self.assertEqual(self.spate.metric("spate_messages_received_total"), 0)

    def test_a_spool_short_of_disk_answers_503_and_queues_nothing(self):
        self.start(spool={"min_free_space": "16MB"}, tmpfs_mb=64)
        filler = os.path.join(self.spate.spool_outside(), "filler")
        with open(filler, "wb") as f:
            f.write(b"\0" * (int(self.spate.metric("spate_spool_free_bytes")) - (8 << 20)))
        req = {"envelope_sender": "s@src.test", "content": "Subject: x\r\n\r\nx\r\n",
               "recipients": [{"email": "a@dest.test"}]}
        harness.wait_for(lambda: self.spate.metric("spate_spool_state", state="low_space") == 1,
                         10, "the spool sees the disk short")
        status, body, headers = self.post(req, key="k1")
        self.assertEqual(status, 503)
        self.assertIn("disk", body["error"])
        self.assertEqual(headers.get("Retry-After"), "60")
        os.unlink(filler)
        # Room again: the same key is taken now (a 503 is not kept), and the mail goes.
        harness.wait_for(lambda: self.post(req, key="k1")[0] == 200, 10, "200 again")
        self.delivered(1)
        time.sleep(1)
        self.assertEqual(len(self.sink.messages), 1)

    def test_a_suppressed_recipient_is_a_failed_one(self):
        self.start()
        req = urllib.request.Request(f"http://{self.address}/api/admin/v1/suppression",
                                     data=json.dumps({"address": "gone@dest.test"}).encode(),
                                     method="POST")
        urllib.request.urlopen(req, timeout=10).read()
        status, body, _ = self.post({"envelope_sender": "s@src.test",
                                     "content": "Subject: x\r\n\r\nx\r\n",
                                     "recipients": [{"email": "gone@dest.test"},
                                                    {"email": "here@dest.test"}]})
        self.assertEqual(status, 200)
        self.assertEqual((body["success_count"], body["fail_count"]), (1, 1))
        self.assertEqual(body["failed_recipients"], ["gone@dest.test"])
        self.assertIn("suppressed", body["errors"][0])
        self.delivered(1)
        self.assertEqual(self.sink.messages[0][0], ["here@dest.test"])


if __name__ == "__main__":
    unittest.main()
