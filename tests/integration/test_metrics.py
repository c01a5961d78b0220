"""The operator's metrics of issue 13, on a real run: the delivery latency histogram counts
each delivered recipient under its domain, the accept latency histogram each accepted message,
deferrals are counted by bounce class, and the oldest queued age of a domain grows while a
recipient waits and is gone once it left the queue; `promtool check metrics` accepts the whole
exposition. Loopback only; every wait has a deadline.
"""
import os
import shutil
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from tls_sink import TlsSink  # noqa: E402


class Metrics(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.sink = TlsSink("127.0.0.1", mode="plain")  # defers busy*, refuses unknown*
        self.spate = harness.Spate(self.dir, {"dest.test": self.sink.port},
                                   delivery={"retry_base": "1s", "retry_max": "1s",
                                             "max_age": "4s", "dsn": False})
        self.spate.start()

    def tearDown(self):
        self.spate.stop()
        self.sink.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_latency_deferrals_and_oldest_age_as_an_operator_reads_them(self):
        spate = self.spate
        with smtplib.SMTP("127.0.0.1", spate.smtp_port, timeout=30) as c:
            for rcpts in (["a@dest.test", "b@dest.test"], ["busy1@dest.test"]):
                c.sendmail("s@src.test", rcpts, b"From: s@src.test\r\nSubject: m\r\n\r\nhi\r\n")
        harness.wait_for(lambda: spate.metric("spate_delivery_latency_seconds_count",
                                              domain="dest.test") == 2, 20, "two deliveries")
        self.assertEqual(spate.metric("spate_delivery_latency_seconds_bucket", domain="dest.test",
                                      le="+Inf"), 2)
        self.assertEqual(spate.metric("spate_accept_latency_seconds_count"), 2)
        self.assertGreater(spate.metric("spate_accept_latency_seconds_sum"), 0)
        # busy1 waits, deferred: its domain has an oldest age, and it grows.
        first = harness.wait_for(
            lambda: spate.metric("spate_queue_oldest_age_seconds", domain="dest.test") or None,
            10, "an oldest age for dest.test")
        time.sleep(1.2)
        self.assertGreater(spate.metric("spate_queue_oldest_age_seconds", domain="dest.test"),
                           first)
        self.assertGreaterEqual(spate.metric("spate_deferrals_total", domain="dest.test"), 1)
        # It expires at max_age (4 s): the queue is empty, and no age is left behind.
        harness.wait_for(lambda: spate.metric("spate_queue_recipients", domain="dest.test") == 0,
                         20, "an empty queue")
        harness.wait_for(lambda: "spate_queue_oldest_age_seconds{" not in spate.metrics(), 5,
                         "no oldest age once nothing is queued")
        deferred = spate.metric("spate_deliveries_total", domain="dest.test", outcome="deferred")
        self.assertEqual(spate.metric("spate_deferrals_total", domain="dest.test"), deferred,
                         "every deferral has a class")
        check = subprocess.run(["promtool", "check", "metrics"], input=spate.metrics(),
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)


if __name__ == "__main__":
    unittest.main()
