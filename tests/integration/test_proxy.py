"""The PROXY protocol behind a real HAProxy (issue 15): relay control, the per-client limit and
Received: see the client HAProxy accepted, not HAProxy; a connection from the balancers'
network without a header is closed; HAProxy's health check (its own PROXY header, LOCAL) sees
the node up. Clients bind 127.0.0.5 (may relay) and 127.0.0.6 (may not) before connecting.
"""
import os
import shutil
import smtplib
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from haproxy import HAProxy  # noqa: E402

ALLOWED = "127.0.0.5"
DENIED = "127.0.0.6"


class Proxy(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.sink = harness.Sink(self.dir, "remote")
        self.addCleanup(self.sink.stop)
        self.spate = harness.Spate(
            self.dir, {"remote.test": self.sink.port}, shards=2,
            server={"relay_networks": [f"{ALLOWED}/32"], "proxy_protocol": True,
                    "proxy_networks": ["127.0.0.1/32"], "max_connections_per_client": 1})
        self.addCleanup(self.spate.stop)
        self.spate.start()
        self.haproxy = HAProxy(os.path.join(self.dir, "haproxy"), [self.spate.smtp_port])
        self.addCleanup(self.haproxy.stop)

    def client(self, source, port):
        return smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0))

    def test_relay_control_and_received_see_the_real_client_over_v2_and_v1(self):
        for port, n in ((self.haproxy.port_v2, 2), (self.haproxy.port_v1, 1)):
            with self.client(ALLOWED, port) as smtp:
                smtp.ehlo("allowed.test")
                smtp.sendmail("s@campaign.test", [f"v{n}@remote.test"],
                              f"Subject: v{n}\r\n\r\nhi\r\n".encode())
            text = self.sink.wait_for_rcpt(f"v{n}@remote.test")
            # spate's Received: names the real client (the sink's own, above it, names spate).
            self.assertIn(f"Received: from allowed.test ([{ALLOWED}])\n\tby spate.test", text)
            with self.client(DENIED, port) as smtp:
                smtp.ehlo("denied.test")
                smtp.mail("s@campaign.test")
                code, msg = smtp.rcpt(f"d{n}@remote.test")
                self.assertEqual(code, 550, msg)
                self.assertIn(b"5.7.1", msg)
                self.assertIn(b"Relay access denied", msg)

    def test_the_per_client_limit_counts_the_real_client(self):
        first = self.client(ALLOWED, self.haproxy.port_v2)
        self.addCleanup(first.close)
        self.assertEqual(first.ehlo()[0], 250)
        # A second from the same client: over max_connections_per_client (1). Through the
        # same HAProxy, a client of another address is not.
        with self.assertRaises(smtplib.SMTPConnectError) as refused:
            self.client(ALLOWED, self.haproxy.port_v2)
        self.assertEqual(refused.exception.smtp_code, 421)
        self.assertIn(b"Too many connections from your address", refused.exception.smtp_error)
        with self.client(DENIED, self.haproxy.port_v2) as other:
            self.assertEqual(other.ehlo()[0], 250)

    def test_a_balancer_connection_without_a_header_is_closed_others_are_clients(self):
        # From proxy_networks (127.0.0.1) straight to spate, no header: closed, no greeting.
        with socket.create_connection(("127.0.0.1", self.spate.smtp_port), timeout=10,
                                      source_address=("127.0.0.1", 0)) as s:
            s.sendall(b"EHLO sneaky.test\r\n")
            self.assertEqual(s.recv(4096), b"", "closed without a reply")
        harness.wait_for(lambda: self.spate.metric("spate_proxy_header_errors_total") >= 1, 10,
                         "the error counted")
        # A client outside proxy_networks straight to spate: an ordinary client (no header).
        with self.client(ALLOWED, self.spate.smtp_port) as smtp:
            self.assertEqual(smtp.ehlo()[0], 250)

    def test_haproxys_health_check_sees_the_node_up(self):
        harness.wait_for(lambda: self.haproxy.server_states() == {"node0": "UP"}, 15,
                         "node0 UP in HAProxy")
        self.assertNotIn("proxy: 127.0.0.1", self.spate.read_log(),
                         "the checks' LOCAL headers are not errors")


if __name__ == "__main__":
    unittest.main()
