"""Nodes behind a real HAProxy (issue 15). The PROXY protocol: relay control, the per-client
limit and Received: see the client HAProxy accepted, not HAProxy; a connection from the
balancers' network without a header is closed; HAProxy's health check (its own PROXY header,
LOCAL) sees the node up. Drain: a node stops accepting, HAProxy sends clients to the other, and
it delivers what it holds. AUTH lockout counts the real client. Clients bind 127.0.0.5 (may
relay) and 127.0.0.6 (may not).
"""
import base64
import json
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from haproxy import HAProxy  # noqa: E402
from test_tls_auth import PASSWORD, USER, make_users_file  # noqa: E402

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


class Drain(unittest.TestCase):
    """Two nodes behind HAProxy; `spate ctl drain` on one: it stops accepting (HAProxy's check
    marks it DOWN and sends new clients to the other), refuses HTTP injection, delivers what it
    holds once its destination answers, and reports drained. Nothing is delivered twice."""

    def setUp(self):
        self.dir = harness.tempdir()
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        # The destination is down at first: the mail a node holds stays there, deferred.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.sink_port = s.getsockname()[1]
        self.nodes = []
        for name in ("a", "b"):
            workdir = os.path.join(self.dir, name)
            os.makedirs(workdir)
            node = harness.Spate(
                workdir, {"remote.test": self.sink_port}, shards=2,
                delivery={"retry_base": "500ms", "retry_max": "1s"},
                server={"proxy_protocol": True, "proxy_networks": ["127.0.0.1/32"]},
                sections={"inject": {"enabled": True}})
            self.addCleanup(node.stop)
            node.start()
            self.nodes.append(node)
        self.haproxy = HAProxy(os.path.join(self.dir, "haproxy"),
                               [n.smtp_port for n in self.nodes])
        self.addCleanup(self.haproxy.stop)
        harness.wait_for(lambda: self.haproxy.server_states() == {"node0": "UP", "node1": "UP"},
                         15, "both nodes UP")

    def admin(self, node):
        return node.ready().split(" admin=")[1].split()[0]

    def send(self, n):
        with smtplib.SMTP("127.0.0.1", self.haproxy.port_v2, timeout=30,
                          source_address=("127.0.0.5", 0)) as smtp:
            smtp.sendmail("s@campaign.test", [f"m{n}@remote.test"], f"Subject: {n}\r\n\r\nx\r\n")

    def received(self, node):
        return node.metric("spate_messages_received_total")

    def test_drain_stops_accepting_delivers_what_it_holds_and_reports_drained(self):
        a, b = self.nodes
        for n in range(6):  # round robin: 3 each
            self.send(n)
        self.assertEqual((self.received(a), self.received(b)), (3, 3))
        drain = subprocess.Popen(
            [harness.SPATE, "ctl", "--config", a.config, "--admin", self.admin(a), "drain",
             "--timeout", "60s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(drain.kill)
        first = drain.stdout.readline()
        self.assertEqual(first.strip(), "draining: 3 messages held, 0 connections open")
        # Not accepting: the kernel refuses, HAProxy's check marks it DOWN, injection is 503.
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", a.smtp_port), timeout=5).close()
        harness.wait_for(lambda: self.haproxy.server_states()["node0"] == "DOWN", 15,
                         "node0 DOWN in HAProxy")
        self.assertEqual(a.metric("spate_draining"), 1)
        request = urllib.request.Request(
            f"http://{self.admin(a)}/api/inject/v1", method="POST",
            data=json.dumps({"envelope_sender": "s@campaign.test",
                             "recipients": [{"email": "i@remote.test"}],
                             "content": "Subject: i\r\n\r\nx\r\n"}).encode(),
            headers={"Content-Type": "application/json"})
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        self.assertEqual(refused.exception.code, 503)
        self.assertIn(b"draining", refused.exception.read())
        # New clients go to the other node.
        for n in range(6, 9):
            self.send(n)
        self.assertEqual((self.received(a), self.received(b)), (3, 6))
        # The destination comes up: the drained node delivers its 3 and says so.
        sink = harness.Sink(self.dir, "remote", port=self.sink_port)
        self.addCleanup(sink.stop)
        out, err = drain.communicate(timeout=60)
        self.assertEqual(drain.returncode, 0, out + err)
        self.assertTrue(out.strip().endswith(
            "drained: no message held, no client connected; the node can be stopped"), out)
        harness.wait_for(lambda: len(sink.transactions()) == 9, 30, "all 9 delivered")
        rcpts = sorted(r for rs, _ in sink.transactions() for r in rs)
        self.assertEqual(rcpts, sorted(f"m{n}@remote.test" for n in range(9)), "each once")
        status = subprocess.run(
            [harness.SPATE, "ctl", "--config", a.config, "--admin", self.admin(a), "--json",
             "drain", "status"], capture_output=True, text=True, timeout=30)
        self.assertEqual(json.loads(status.stdout),
                         {"draining": True, "pending_messages": 0, "inbound_connections": 0,
                          "drained": True})


class ProxyAuthLockout(unittest.TestCase):
    """AUTH lockout behind HAProxy counts the real client: one locked out after max_failures,
    another through the same balancer still authenticates."""

    def setUp(self):
        self.user, self.password = USER, PASSWORD
        self.dir = harness.tempdir()
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.spate = harness.Spate(
            self.dir, {}, shards=2,
            server={"proxy_protocol": True, "proxy_networks": ["127.0.0.1/32"]},
            sections={"auth": {"users_file": make_users_file(self.dir), "plaintext": True,
                               "max_failures": 2}})
        self.addCleanup(self.spate.stop)
        self.spate.start()
        self.haproxy = HAProxy(os.path.join(self.dir, "haproxy"), [self.spate.smtp_port])
        self.addCleanup(self.haproxy.stop)

    def auth(self, source, password):
        """The reply code to AUTH PLAIN from `source` through HAProxy (421: closed)."""
        token = base64.b64encode(f"\0{self.user}\0{password}".encode()).decode()
        smtp = smtplib.SMTP("127.0.0.1", self.haproxy.port_v2, timeout=30,
                            source_address=(source, 0))
        try:
            smtp.ehlo("client.test")
            return smtp.docmd("AUTH", "PLAIN " + token)[0]
        except smtplib.SMTPServerDisconnected:
            return 421
        finally:
            smtp.close()

    def test_the_lockout_is_the_real_clients(self):
        self.assertEqual(self.auth(ALLOWED, "wrong"), 535)
        self.assertEqual(self.auth(ALLOWED, "wrong"), 535)  # the second: then 421, closed
        self.assertEqual(self.auth(ALLOWED, self.password), 421, "locked out")
        self.assertEqual(self.auth(DENIED, self.password), 235,
                         "another client behind the same balancer is not")
