"""Sites (MX rollup) and outbound STARTTLS, through a real DNS server on loopback
(tests/dns/dnsserver.py) and TLS-speaking sinks (tls_sink.py) on 127.0.0.x and ::1 at a shared
mx_port. What a user checks:
- domains on one MX host share its connection limit: max_connections = 2 holds for all of them
  together, and the delivery lines and site metrics name the site;
- a domain whose policy requires TLS is not in its MX siblings' pool: it defers where they
  deliver (KumoMTA #484);
- an MX that offers STARTTLS gets the mail over TLS (the log and the metrics say which version);
  one whose handshake fails gets it in plaintext after one retry when TLS is opportunistic, and
  none when it is required; "verify" delivers to a certificate naming the MX host and defers
  one that does not;
- a short TTL is looked up again after it runs out and not before; a domain with only an AAAA
  record gets its mail over IPv6; a DNS server that drops queries defers the mail (4.4.3).
"""
import os
import shutil
import smtplib
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from test_mx import DnsServer  # noqa: E402
from tls_sink import CERT, TlsSink  # noqa: E402


def zone(ttl_host="127.0.0.2"):
    return {
        "records": [
            # Four domains on one MX host, and one with the same MX but its own TLS policy.
            ["a.shared.test.", "MX", 300, "10 mx.shared.test."],
            ["b.shared.test.", "MX", 300, "10 mx.shared.test."],
            ["c.shared.test.", "MX", 300, "10 mx.shared.test."],
            ["d.shared.test.", "MX", 300, "10 mx.shared.test."],
            ["strict.test.", "MX", 300, "10 mx.shared.test."],
            ["mx.shared.test.", "A", 300, "127.0.0.2"],
            # STARTTLS works.
            ["tls.test.", "MX", 300, "10 mx.tls.test."],
            ["mx.tls.test.", "A", 300, "127.0.0.3"],
            # STARTTLS offered, handshake broken.
            ["broken.test.", "MX", 300, "10 mx.broken.test."],
            ["brokenstrict.test.", "MX", 300, "10 mx.broken.test."],
            ["mx.broken.test.", "A", 300, "127.0.0.4"],
            # "verify": the certificate names spate.test, not mx.tls.test.
            ["verified.test.", "MX", 300, "10 spate.test."],
            ["spate.test.", "A", 300, "127.0.0.3"],
            ["misnamed.test.", "MX", 300, "10 mx.tls.test."],
            # A one-second TTL on the MX host's address.
            ["ttl.test.", "MX", 300, "10 mx.ttl.test."],
            ["mx.ttl.test.", "A", 1, ttl_host],
            # Only IPv6: implicit MX to ::1.
            ["v6.test.", "AAAA", 300, "::1"],
        ],
        "drop": ["slow.test."],
    }


class SitesAndTls(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        # Each DATA is answered after 50 ms, so that the queue of the shared site is deep
        # enough for the pool to want more connections than it may have.
        self.shared = TlsSink("127.0.0.2", mode="plain", data_delay=0.05)
        port = self.shared.port
        self.tls = TlsSink("127.0.0.3", port, mode="starttls")
        self.broken = TlsSink("127.0.0.4", port, mode="broken")
        self.ttl2 = TlsSink("127.0.0.5", port, mode="plain")
        self.v6 = TlsSink("::1", port, mode="plain")
        self.dns = DnsServer(self.dir, zone())
        self.spate = harness.Spate(
            self.dir, {}, shards=2, log_deliveries=True,
            delivery={"mx_port": port, "prohibited_networks": [], "max_connections": 2,
                      "retry_base": "1s", "retry_max": "2s", "idle_timeout": "500ms",
                      "tls_ca_file": CERT},
            sections={"tls_policy": {"strict.test": "required",
                                     "brokenstrict.test": "required",
                                     "verified.test": "verify", "misnamed.test": "verify"}},
            dns={"nameservers": [f"127.0.0.1:{self.dns.port}"], "timeout": "1s",
                 "min_ttl": "1s", "negative_ttl": "1s"})
        self.spate.start()

    def tearDown(self):
        self.spate.stop()
        for s in (self.shared, self.tls, self.broken, self.ttl2, self.v6):
            s.stop()
        self.dns.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def send(self, rcpts, n=0):
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
            self.assertEqual(smtp.sendmail("s@campaign.test", rcpts,
                                           f"Subject: {n}\r\n\r\nhi\r\n"), {})

    def queries(self, name, rtype):
        with open(self.dns.log_path) as f:
            return sum(1 for line in f if line.strip() == f"query {name}. {rtype}")

    def test_sites_share_one_pool_and_its_limit(self):
        # 60 messages to four domains with one MX host, sent by three clients at once.
        def client(k):
            for i in range(20):
                self.send([f"u{k}-{i}@{'abcd'[(k + i) % 4]}.shared.test"], i)
        threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        harness.wait_for(lambda: len(self.shared.rcpts()) == 60, 60, "60 deliveries")
        # Per domain, each pool would have had 2: together the site never had more than 2.
        self.assertLessEqual(self.shared.most_open, 2)
        self.assertGreaterEqual(self.shared.most_open, 1)
        site = "mx.shared.test"
        self.assertEqual(self.spate.metric("spate_site_deliveries_total", site=site,
                                           outcome="delivered"), 60)
        for d in "abcd":
            self.assertEqual(self.spate.metric("spate_deliveries_total", domain=f"{d}.shared.test",
                                               outcome="delivered"), 15)
        self.spate.wait_for_log(r"delivered .*domain=a\.shared\.test .*site=mx\.shared\.test "
                                r"mx=mx\.shared\.test\[127\.0\.0\.2\]:\d+ tls=none")

        # strict.test has the same MX but requires TLS, which that host does not offer: its
        # mail is deferred, and its siblings' is not held back by it, nor it carried by theirs.
        self.send(["x@strict.test", "y@a.shared.test"], 99)
        self.spate.wait_for_log(r"deferred .*rcpt=<x@strict\.test>.*451 4\.7\.4 TLS is required, "
                                r"but mx\.shared\.test\[127\.0\.0\.2\]:\d+ does not offer STARTTLS")
        harness.wait_for(lambda: "y@a.shared.test" in self.shared.rcpts(), 30, "y delivered")
        self.assertNotIn("x@strict.test", self.shared.rcpts())
        self.assertGreaterEqual(self.spate.metric("spate_outbound_tls_unavailable_total"), 1)

    def test_starttls_opportunistic_required_and_verify(self):
        self.send(["a@tls.test"], 1)
        self.send(["b@broken.test"], 2)
        self.send(["c@brokenstrict.test"], 3)
        self.send(["d@verified.test"], 4)
        self.send(["e@misnamed.test"], 5)
        wait = harness.wait_for
        # Over TLS, and the log line and the metrics say which version and cipher.
        wait(lambda: "a@tls.test" in self.tls.rcpts(), 30, "a over TLS")
        self.assertEqual(self.tls.tls_of("a@tls.test"), "TLSv1.3")
        self.spate.wait_for_log(r"delivered .*rcpt=<a@tls\.test>.* mx=mx\.tls\.test\[127\.0\.0\.3\]"
                                r":\d+ tls=TLSv1\.3/TLS_\w+")
        self.assertGreaterEqual(self.spate.metric("spate_outbound_tls_sessions_total",
                                                  version="TLSv1.3"), 1)
        # Broken handshake, opportunistic: once more in plaintext, delivered.
        wait(lambda: "b@broken.test" in self.broken.rcpts(), 30, "b in plaintext")
        self.assertIsNone(self.broken.tls_of("b@broken.test"))
        self.assertGreaterEqual(self.spate.metric("spate_outbound_tls_fallbacks_total"), 1)
        self.assertGreaterEqual(self.spate.metric("spate_outbound_tls_failures_total"), 1)
        # Broken handshake, required: deferred, never in plaintext.
        self.spate.wait_for_log(r"deferred .*rcpt=<c@brokenstrict\.test>.*451 4\.7\.5 TLS "
                                r"handshake with mx\.broken\.test\[127\.0\.0\.4\]:\d+ failed")
        # verify: the certificate names spate.test, the MX host: delivered over TLS (the name
        # was sent as SNI) ...
        wait(lambda: "d@verified.test" in self.tls.rcpts(), 30, "d verified")
        self.assertEqual(self.tls.tls_of("d@verified.test"), "TLSv1.3")
        self.assertIn("spate.test", self.tls.sni)
        # ... and one whose MX host it does not name is deferred, saying why.
        self.spate.wait_for_log(r"deferred .*rcpt=<e@misnamed\.test>.*451 4\.7\.5 .*certificate "
                                r"verify failed")
        time.sleep(1.5)  # a retry of each has come and gone
        self.assertNotIn("c@brokenstrict.test", self.broken.rcpts())
        self.assertNotIn("e@misnamed.test", self.tls.rcpts())

    def test_ttl_ipv6_and_dropped_queries(self):
        self.send(["a@ttl.test"], 1)
        harness.wait_for(lambda: "a@ttl.test" in self.shared.rcpts(), 30, "a")
        # The MX record has 300 s, its host's address 1 s: the route lasts 1 s.
        queries = self.queries("mx.ttl.test", "A")
        self.assertGreaterEqual(queries, 1)
        # Within the TTL: from the cache, no lookup, the same host.
        self.dns.set_zone(zone(ttl_host="127.0.0.5"))
        self.send(["b@ttl.test"], 2)
        harness.wait_for(lambda: "b@ttl.test" in self.shared.rcpts(), 30, "b")
        self.assertEqual(self.queries("mx.ttl.test", "A"), queries)
        # After it: looked up again, and the new address gets the mail. (libunbound's cache
        # counts whole seconds: a 1 s record may live up to 2 s there.)
        time.sleep(2.5)
        self.send(["c@ttl.test"], 3)
        harness.wait_for(lambda: "c@ttl.test" in self.ttl2.rcpts(), 30, "c at the new address")
        self.assertGreater(self.queries("mx.ttl.test", "A"), queries)
        # A domain with only an AAAA record: to ::1.
        self.send(["d@v6.test"], 4)
        harness.wait_for(lambda: "d@v6.test" in self.v6.rcpts(), 30, "d over IPv6")
        self.spate.wait_for_log(r"delivered .*rcpt=<d@v6\.test>.* mx=v6\.test\[::1\]:\d+")
        # Queries never answered: a timeout, deferred with 4.4.3.
        self.send(["e@slow.test"], 5)
        self.spate.wait_for_log(r"deferred .*rcpt=<e@slow\.test>.*451 4\.4\.3", timeout=15)
        self.assertGreaterEqual(self.spate.metric("spate_dns_lookups_total", type="MX",
                                                  result="timeout"), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
