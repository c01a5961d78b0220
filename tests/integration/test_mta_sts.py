"""MTA-STS (RFC 8461, issue 14) against a real DNS server and a local HTTPS policy server with a
test CA, all on loopback: an "enforce" policy whose MX matches delivers over TLS verified for the
MX name; one whose MX hosts do not match defers the mail and delivers nothing; an enforce policy
whose MX certificate does not name the host defers; "testing" delivers as without a policy; a
changed id fetches the policy again (behind the cached one); a policy kept in the spool holds after a restart with the
policy server gone; a redirect is not followed.
"""
import http.server
import json
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from test_mx import DnsServer  # noqa: E402
from tls_sink import CERT, TlsSink  # noqa: E402


def make_ca(d, names):
    """A test CA and one server certificate naming every one of `names` (PEM paths)."""
    ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    key, csr, crt = (os.path.join(d, n) for n in ("srv.key", "srv.csr", "srv.crt"))
    ext = os.path.join(d, "ext.cnf")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=spate test CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=" + names[0])
    with open(ext, "w") as f:
        f.write("subjectAltName=" + ",".join("DNS:" + n for n in names) + "\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", crt, "-days", "2", "-extfile", ext)
    return ca, crt, key


class PolicyServer:
    """HTTPS on loopback: GET /.well-known/mta-sts.txt answers the policy of the Host asked."""

    def __init__(self, cert, key):
        self.policies = {}  # host -> (status, body)
        self.fetches = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = self.headers.get("Host", "")
                server.fetches.append((host, self.path))
                status, body = server.policies.get(host, (404, "no policy"))
                self.send_response(status)
                if status in (301, 302):
                    self.send_header("Location", "https://elsewhere.test/")
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def policy(mode, *mx, max_age=86400):
    return "version: STSv1\r\nmode: %s\r\n%smax_age: %d\r\n" % (
        mode, "".join(f"mx: {m}\r\n" for m in mx), max_age)


DOMAINS = ("enforce.test", "mismatch.test", "misnamed.test", "testing.test", "moved.test")


def zone(ids):
    records = [
        # The MX certificate (tls_sink's) names spate.test.
        ["enforce.test.", "MX", 1, "10 spate.test."],
        ["mismatch.test.", "MX", 1, "10 spate.test."],
        ["misnamed.test.", "MX", 1, "10 mx.misnamed.test."],
        ["testing.test.", "MX", 1, "10 mx.misnamed.test."],
        ["moved.test.", "MX", 1, "10 spate.test."],
        ["spate.test.", "A", 300, "127.0.0.3"],
        ["mx.misnamed.test.", "A", 300, "127.0.0.3"],
    ]
    for d in DOMAINS:
        records.append([f"mta-sts.{d}.", "A", 300, "127.0.0.1"])
        if d in ids:
            records.append([f"_mta-sts.{d}.", "TXT", 1, f'"v=STSv1; id={ids[d]};"'])
    return {"records": records}


class MtaSts(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.ca, crt, key = make_ca(self.dir, [f"mta-sts.{d}" for d in DOMAINS])
        self.https = PolicyServer(crt, key)
        self.https.policies = {
            "mta-sts.enforce.test": (200, policy("enforce", "spate.test")),
            "mta-sts.mismatch.test": (200, policy("enforce", "mx.elsewhere.test", "*.other.test")),
            "mta-sts.misnamed.test": (200, policy("enforce", "mx.misnamed.test")),
            "mta-sts.testing.test": (200, policy("testing", "spate.test")),
            "mta-sts.moved.test": (301, "moved"),
        }
        self.ids = {d: "1" for d in DOMAINS}
        self.sink = TlsSink("127.0.0.3", mode="starttls")
        self.dns = DnsServer(self.dir, zone(self.ids))
        self.spate = harness.Spate(
            self.dir, {}, shards=2, log_deliveries=True,
            delivery={"mx_port": self.sink.port, "prohibited_networks": [],
                      "retry_base": "1s", "retry_max": "1s", "tls_ca_file": CERT},
            sections={"mta_sts": {"port": self.https.port, "ca_file": self.ca,
                                  "fetch_timeout": "5s"},
                      "tlsrpt": {"enabled": True, "directory": os.path.join(self.dir, "tlsrpt")}},
            dns={"nameservers": [f"127.0.0.1:{self.dns.port}"], "timeout": "1s",
                 "min_ttl": "1s", "max_ttl": "1s", "negative_ttl": "1s"})
        self.spate.start()

    def tearDown(self):
        self.spate.stop()
        self.sink.stop()
        self.https.stop()
        self.dns.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def send(self, rcpt, n=0):
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
            self.assertEqual(smtp.sendmail("s@campaign.test", [rcpt],
                                           f"Subject: {n}\r\n\r\nhi\r\n"), {})

    def record_of(self, rcpt, type_):
        with open(self.spate.records_path) as f:
            for r in map(json.loads, f):
                if r.get("recipient") == rcpt and r["type"] == type_:
                    return r
        return None

    def delivered(self, rcpt):
        return [t for t in self.sink.transactions if rcpt in t[0]]

    def test_enforce_testing_mismatch_misnamed_and_a_redirect(self):
        for d in DOMAINS:
            self.send(f"u@{d}")
        harness.wait_for(lambda: self.delivered("u@enforce.test"), 20, "enforce delivered")
        harness.wait_for(lambda: self.delivered("u@testing.test"), 20, "testing delivered")
        harness.wait_for(lambda: self.delivered("u@moved.test"), 20,
                         "a redirect is no policy: delivered as without one")
        # Enforce: over TLS, the certificate verified for the MX name (SNI spate.test).
        self.assertIsNotNone(self.delivered("u@enforce.test")[0][1], "over TLS")
        self.assertIn("spate.test", self.sink.sni)
        # Deferred, never delivered: no MX matches; the MX certificate does not name the host.
        harness.wait_for(lambda: self.spate.metric("spate_deliveries_total",
                                                   domain="mismatch.test",
                                                   outcome="deferred") >= 1, 20, "mismatch deferred")
        harness.wait_for(lambda: self.spate.metric("spate_deliveries_total",
                                                   domain="misnamed.test",
                                                   outcome="deferred") >= 1, 20, "misnamed deferred")
        time.sleep(1.5)
        self.assertEqual(self.delivered("u@mismatch.test"), [])
        self.assertEqual(self.delivered("u@misnamed.test"), [])
        log = self.spate.read_log()
        self.assertIn("MTA-STS: no MX host of mismatch.test matches its policy", log)
        self.assertIn("moved.test: the policy (id 1) could not be fetched: HTTP status 301", log)
        # The metrics and the records say which policy each went by.
        m = self.spate.metric
        self.assertGreaterEqual(m("spate_tls_policy_total", domain="enforce.test",
                                  policy="mta-sts-enforce", result="ok"), 1)
        self.assertGreaterEqual(m("spate_tls_policy_total", domain="mismatch.test",
                                  policy="mta-sts-enforce", result="mismatch"), 1)
        self.assertGreaterEqual(m("spate_tls_policy_total", domain="misnamed.test",
                                  policy="mta-sts-enforce", result="tempfail"), 1)
        self.assertGreaterEqual(m("spate_tls_policy_total", domain="testing.test",
                                  policy="mta-sts-testing", result="ok"), 1)
        # testing.test's MX certificate does not name mx.misnamed.test: delivered all the same,
        # and what enforcing would have found is counted and logged (RFC 8461 §5).
        self.assertGreaterEqual(m("spate_tls_policy_total", domain="testing.test",
                                  policy="mta-sts-testing", result="tempfail"), 1)
        self.assertIn("testing policy: mx.misnamed.test", log)
        self.assertGreaterEqual(m("spate_tls_policy_total", domain="moved.test",
                                  policy="none", result="ok"), 1)
        harness.wait_for(lambda: self.record_of("u@enforce.test", "Delivery"), 10, "a record")
        self.assertEqual(self.record_of("u@enforce.test", "Delivery")["mta_sts"], "enforce")
        self.assertEqual(self.record_of("u@testing.test", "Delivery")["mta_sts"], "testing")
        self.assertNotIn("mta_sts", self.record_of("u@moved.test", "Delivery"))
        hosts = [h for h, _ in self.https.fetches]
        self.assertEqual(hosts.count("mta-sts.enforce.test"), 1, "fetched once, then cached")
        self.assertTrue(all(p == "/.well-known/mta-sts.txt" for _, p in self.https.fetches))
        self.check_tlsrpt()

    def check_tlsrpt(self):
        """The RFC 8460 report files, written when spate stops: a report per STS domain."""
        self.spate.stop()
        day = time.strftime("%Y-%m-%d", time.gmtime())

        def report(domain):
            with open(os.path.join(self.dir, "tlsrpt", day, domain + ".json")) as f:
                doc = json.load(f)
            self.assertEqual(doc["contact-info"], "postmaster@spate.test")
            [entry] = doc["policies"]
            self.assertEqual(entry["policy"]["policy-type"], "sts")
            self.assertEqual(entry["policy"]["policy-domain"], domain)
            return entry
        ok = report("enforce.test")
        self.assertEqual(ok["policy"]["policy-string"],
                         ["version: STSv1", "mode: enforce", "mx: spate.test", "max_age: 86400"])
        self.assertEqual(ok["policy"]["mx-host"], ["spate.test"])
        self.assertGreaterEqual(ok["summary"]["total-successful-session-count"], 1)
        self.assertEqual(ok["summary"]["total-failure-session-count"], 0)
        # No MX host matches: never tried, a validation failure per host.
        [d] = report("mismatch.test")["failure-details"]
        self.assertEqual((d["result-type"], d["receiving-mx-hostname"], d["receiving-ip"]),
                         ("validation-failure", "spate.test", "127.0.0.3"))
        # The MX certificate does not name the host: enforce fails, testing only reports.
        for domain in ("misnamed.test", "testing.test"):
            entry = report(domain)
            kinds = {d["result-type"] for d in entry["failure-details"]}
            self.assertEqual(kinds, {"certificate-host-mismatch"}, domain)
            d = entry["failure-details"][0]
            self.assertEqual(d["receiving-mx-hostname"], "mx.misnamed.test")
            self.assertEqual(d["receiving-ip"], "127.0.0.3")
        self.assertGreaterEqual(
            report("testing.test")["summary"]["total-failure-session-count"], 1)
        # A redirect is a failed fetch (RFC 8460 §4.3.2.2), with no policy to name.
        moved = report("moved.test")
        [d] = moved["failure-details"]
        self.assertEqual(d["result-type"], "sts-policy-fetch-error")
        self.assertEqual(d["receiving-mx-hostname"], "mta-sts.moved.test")
        self.assertIn("301", d["additional-information"])

    def test_a_changed_id_fetches_again_and_a_kept_policy_outlives_a_restart(self):
        self.send("a@enforce.test")
        harness.wait_for(lambda: self.delivered("a@enforce.test"), 20, "delivered")
        # The domain moves its policy to other MX hosts, with a new id. The next mail still goes
        # by the cached policy while the new one is fetched behind it (RFC 8461 §5.1); the mail
        # after that waits.
        self.https.policies["mta-sts.enforce.test"] = (200, policy("enforce", "mx.new.test"))
        self.ids["enforce.test"] = "2"
        self.dns.set_zone(zone(self.ids))
        time.sleep(2.5)  # the TXT and the route expire (1 s TTLs)
        self.send("b0@enforce.test")
        harness.wait_for(lambda: self.delivered("b0@enforce.test"), 20, "by the cached policy")
        harness.wait_for(lambda: [h for h, _ in self.https.fetches].count(
            "mta-sts.enforce.test") == 2, 20, "the new id fetched")
        time.sleep(1.5)  # the route made under the old policy expires
        self.send("b@enforce.test")
        harness.wait_for(lambda: self.spate.metric("spate_deliveries_total",
                                                   domain="enforce.test",
                                                   outcome="deferred") >= 1, 20, "deferred")
        self.assertEqual(self.delivered("b@enforce.test"), [])

        # Back to the first policy (id 3); then the policy server goes away and spate restarts:
        # the policy kept in the spool still holds (mismatch.test's too: its mail waits).
        self.https.policies["mta-sts.enforce.test"] = (200, policy("enforce", "spate.test"))
        self.ids["enforce.test"] = "3"
        self.dns.set_zone(zone(self.ids))
        harness.wait_for(lambda: self.delivered("b@enforce.test"), 30, "b delivered on retry")
        self.send("c@mismatch.test")
        harness.wait_for(lambda: self.spate.metric("spate_deliveries_total",
                                                   domain="mismatch.test",
                                                   outcome="deferred") >= 1, 20, "deferred")
        self.assertEqual(self.spate.stop(), 0)
        self.https.stop()
        self.https = PolicyServer(*make_ca(os.path.join(self.dir), ["nothing.test"])[1:])
        self.spate.start()
        self.send("d@enforce.test")
        harness.wait_for(lambda: self.delivered("d@enforce.test"), 20, "kept policy: delivered")
        # Tried again after the restart, and deferred again: the policy could not be fetched
        # (the new server's certificate names nothing of it), the kept one holds.
        harness.wait_for(lambda: self.spate.metric("spate_deliveries_total",
                                                   domain="mismatch.test",
                                                   outcome="deferred") >= 1, 20,
                         "deferred after the restart")
        self.assertEqual(self.delivered("c@mismatch.test"), [], "kept policy: still waiting")
        self.assertIn("MTA-STS policies kept from before", self.spate.read_log())


if __name__ == "__main__":
    unittest.main()
