"""The admin API and `spate ctl` against the real daemon (issue 13, its first commands): the
queue by domain and by site counts what waits and how old it is, `ctl reload` reloads as
SIGHUP does, a bearer token is required when configured (401 with a JSON error without it), bad
input gets a 4xx naming the field, and a listener off loopback without a token refuses to start.
Loopback only; every wait has a deadline.
"""
import json
import os
import shutil
import smtplib
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from tls_sink import TlsSink  # noqa: E402
from test_dkim import MessageSink  # noqa: E402  (defers its first transactions)


class Admin(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.sink = TlsSink("127.0.0.1", mode="plain")  # defers busy*
        self.token = os.path.join(self.dir, "admin.token")
        with open(self.token, "w") as f:
            f.write("s3cret-token\n")
        self.spate = None

    def tearDown(self):
        if self.spate:
            self.spate.stop()
        self.sink.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, admin):
        self.spate = harness.Spate(self.dir, {"dest.test": self.sink.port},
                                   delivery={"retry_base": "30s", "retry_max": "30s"},
                                   sections={"admin": admin})
        ready = self.spate.start()
        return ready

    def admin_address(self, ready):
        return ready.split(" admin=")[1].split()[0]

    def ctl(self, *args):
        """spate ctl with the token file from the configuration, at the port spate picked (the
        configuration says port 0)."""
        return subprocess.run([harness.SPATE, "ctl", "--config", self.spate.config, "--admin",
                               self.address, *args], capture_output=True, text=True, timeout=60)

    def get(self, address, path, token=None, method="GET"):
        req = urllib.request.Request(f"http://{address}{path}", method=method,
                                     data=b"" if method == "POST" else None)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def test_queue_reload_token_and_bad_input(self):
        ready = self.start({"listen": "127.0.0.1:0", "token_file": self.token})
        address = self.address = self.admin_address(ready)
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as c:
            c.sendmail("s@src.test", ["busy1@dest.test", "busy2@dest.test", "ok@dest.test"],
                       b"From: s@src.test\r\nSubject: q\r\n\r\nhi\r\n")
        # Two wait deferred (30 s), one is delivered.
        harness.wait_for(lambda: self.spate.metric("spate_queue_recipients",
                                                   domain="dest.test") == 2, 20, "two waiting")
        status, body = self.get(address, "/api/admin/v1/queue?by=domain", token="s3cret-token")
        self.assertEqual(status, 200)
        row = [r for r in body["rows"] if r["name"] == "dest.test"][0]
        self.assertEqual(row["queued"], 2)
        self.assertGreaterEqual(row["oldest_age_seconds"], 0)
        self.assertFalse(row["suspended"])

        out = self.ctl("queue")
        self.assertEqual(out.returncode, 0, out.stderr)
        line = [l for l in out.stdout.splitlines() if l.startswith("dest.test")][0]
        self.assertEqual(line.split()[1], "2", out.stdout)
        self.assertIn("DOMAIN", out.stdout.splitlines()[0])
        out = self.ctl("--json", "queue", "--by", "site")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["by"], "site")

        # Without the token, or with another: 401, a JSON error, no data.
        status, body = self.get(address, "/api/admin/v1/queue")
        self.assertEqual(status, 401)
        self.assertIn("token", body["error"])
        self.assertNotIn("rows", body)
        self.assertEqual(self.get(address, "/api/admin/v1/queue", token="s3cret-tokem")[0], 401)
        # The scheme's name in any case (RFC 9110 §11.1), the token exactly.
        req = urllib.request.Request(f"http://{address}/api/admin/v1/queue")
        req.add_header("Authorization", "bearer s3cret-token")
        with urllib.request.urlopen(req, timeout=10) as r:
            self.assertEqual(r.status, 200)
        # Bad input names the field.
        status, body = self.get(address, "/api/admin/v1/queue?by=planet", token="s3cret-token")
        self.assertEqual((status, body["field"]), (400, "by"))
        status, body = self.get(address, "/api/admin/v1/nothing", token="s3cret-token")
        self.assertEqual(status, 404)
        out = self.ctl("queue", "--by", "planet")
        self.assertEqual(out.returncode, 1)
        self.assertIn("by must be domain, site or campaign", out.stderr)

        # ctl reload is SIGHUP.
        out = self.ctl("reload")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.spate.wait_for_log(r"spate: reloaded: ", 10)

    def test_flush_tries_deferred_mail_now(self):
        later = MessageSink(defer_first=2)
        try:
            self.spate = harness.Spate(
                self.dir, {"dest.test": self.sink.port, "later.test": later.port},
                delivery={"retry_base": "1h", "retry_max": "1h"})
            ready = self.spate.start()
            self.address = self.admin_address(ready)
            with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as c:
                for rcpt in ("a@later.test", "b@later.test"):
                    c.sendmail("s@src.test", [rcpt], b"From: s@src.test\r\nSubject: f\r\n\r\nhi\r\n")
            harness.wait_for(lambda: self.spate.metric("spate_deliveries_total", domain="later.test",
                                                       outcome="deferred") == 2, 20, "two deferred")
            self.assertEqual(len(later.messages), 2)
            out = self.ctl("flush", "--domain", "other.test")  # nothing of it waits
            self.assertEqual(out.returncode, 0, out.stderr)
            time.sleep(1)
            self.assertEqual(len(later.messages), 2, "another domain's flush touched nothing")
            out = self.ctl("flush", "--domain", "Later.Test")
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("Later.Test", out.stdout)
            harness.wait_for(lambda: len(later.messages) == 4, 20, "both tried again, at once")
            harness.wait_for(lambda: self.spate.metric("spate_queue_recipients",
                                                       domain="later.test") == 0, 20, "delivered")
            status, body = self.get(self.address, "/api/admin/v1/flush?dom=x", method="POST")
            self.assertEqual((status, body["field"]), (400, "dom"), "the unknown parameter")
        finally:
            later.stop()

    def test_suppression_add_show_remove_take_effect_at_rcpt(self):
        ready = self.start({"listen": "127.0.0.1:0"})
        self.address = self.admin_address(ready)

        def rcpt(address):
            with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as c:
                c.ehlo("client.test")
                c.mail("s@src.test")
                return c.rcpt(address)

        self.assertEqual(rcpt("Bob@Dest.Test")[0], 250)
        out = self.ctl("suppression", "add", "Bob@Dest.Test", "--reason", "asked to stop")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("bob@dest.test suppressed since", out.stdout)
        code, text = rcpt("bob@dest.test")
        self.assertEqual(code, 550)
        self.assertIn(b"asked to stop", text)
        out = self.ctl("--json", "suppression", "show", "bob@dest.test")
        self.assertEqual(json.loads(out.stdout)["class"], "Manual")
        out = self.ctl("suppression", "remove", "bob@dest.test")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(rcpt("bob@dest.test")[0], 250)
        out = self.ctl("suppression", "remove", "bob@dest.test")
        self.assertEqual(out.returncode, 1)
        self.assertIn("not on the suppression list", out.stderr)
        status, body = self.get(self.address, "/api/admin/v1/suppression?address=not-an-address")
        self.assertEqual((status, body["field"]), (400, "address"))
        req = urllib.request.Request(f"http://{self.address}/api/admin/v1/suppression",
                                     data=b"{not json", method="POST")
        try:
            urllib.request.urlopen(req, timeout=10)
            self.fail("malformed JSON accepted")
        except urllib.error.HTTPError as e:
            self.assertEqual((e.code, json.loads(e.read())["field"]), (400, "body"))

    def test_a_request_without_the_token_is_refused_before_its_body_and_connections_are_capped(self):
        # A client without the token gets its 401 as soon as the head is read: a 10 MB body it
        # announces is not waited for (nor held).
        import socket
        ready = self.start({"listen": "127.0.0.1:0", "token_file": self.token})
        host, port = self.admin_address(ready).rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"POST /api/inject/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
                      b"Content-Type: application/json\r\n\r\n{")
            start = time.monotonic()
            reply = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break  # closed after the answer
                reply += chunk
            self.assertLess(time.monotonic() - start, 5)
        self.assertTrue(reply.startswith(b"HTTP/1.1 401 "), reply[:80])
        # At most AdminServer::kMaxConnections (256) open at once: past them a connection is
        # closed at once, and once some end, new ones are served again.
        conns = [socket.create_connection((host, int(port)), timeout=10) for _ in range(260)]
        try:
            closed = 0
            for c in conns[-4:]:
                c.settimeout(5)
                try:
                    closed += c.recv(1) == b""
                except (ConnectionResetError, socket.timeout):
                    closed += 1
            self.assertEqual(closed, 4, "connections past the cap were not closed")
        finally:
            for c in conns:
                c.close()
        harness.wait_for(lambda: self.get(f"{host}:{port}", "/api/admin/v1/queue",
                                          token="s3cret-token")[0] == 200,
                         10, "the API answering again once the connections ended")

    def test_a_listener_off_loopback_without_a_token_is_refused(self):
        spate = harness.Spate(self.dir, {"dest.test": self.sink.port},
                              sections={"admin": {"listen": "0.0.0.0:0"}})
        run = subprocess.run([harness.SPATE, "--config", spate.config], capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(run.returncode, 2)
        self.assertIn("not on loopback: set [admin] token_file", run.stderr)


if __name__ == "__main__":
    unittest.main()
