"""Delivery by MX records (RFC 5321 §5): spate with no smarthost asks a real DNS server on
loopback (tests/dns/dnsserver.py, python3-dnslib) and delivers to smtp-sinks listening on
127.0.0.x at a shared mx_port ([delivery] prohibited_networks = [] so that loopback may be an
MX). What a user checks: mail goes to the best MX; a domain without MX goes to its own address;
a null MX (RFC 7505) and a domain that does not exist fail at once, with no connection; a DNS
failure defers, and the mail goes once the DNS answers; static routes still win over MX.
"""
import json
import os
import re
import shutil
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

DNS_SERVER = os.path.join(os.path.dirname(__file__), "..", "dns", "dnsserver.py")


class DnsServer:
    """tests/dns/dnsserver.py on a free loopback port, with a zone the test may change."""

    def __init__(self, workdir, zone):
        self.zone_path = os.path.join(workdir, "zone.json")
        self.set_zone(zone)
        self.log_path = os.path.join(workdir, "dns.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["/usr/bin/python3", DNS_SERVER, self.zone_path],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.port = int(harness.wait_for(self._port, 10, "the DNS server's port"))

    def _port(self):
        if self.proc.poll() is not None:
            with open(self.log_path) as f:
                raise AssertionError("the DNS server exited: " + f.read())
        with open(self.log_path) as f:
            for line in f:
                if line.startswith("port="):
                    return line.strip().split("=")[1]
        return None

    def set_zone(self, zone):
        tmp = self.zone_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(zone, f)
        os.replace(tmp, self.zone_path)

    def stop(self):
        self.proc.kill()
        self.proc.wait(10)
        self.log.close()


def zone(port_unused=None, servfail=()):
    return {
        "records": [
            ["best.test.", "MX", 300, "10 mx1.best.test."],
            ["best.test.", "MX", 300, "20 mx2.best.test."],
            ["mx1.best.test.", "A", 300, "127.0.0.2"],
            ["mx2.best.test.", "A", 300, "127.0.0.3"],
            ["implicit.test.", "A", 300, "127.0.0.3"],
            ["nomail.test.", "MX", 300, "0 ."],
            ["flaky.test.", "MX", 300, "10 mx1.best.test."],
            ["routed.test.", "MX", 300, "10 mx2.best.test."],
            # The best MX refuses connections (nothing listens on 127.0.0.4), the second takes.
            ["failover.test.", "MX", 300, "10 down.failover.test."],
            ["failover.test.", "MX", 300, "20 mx2.best.test."],
            ["down.failover.test.", "A", 300, "127.0.0.4"],
            # The senders' domain: their DSNs go there.
            ["campaign.test.", "MX", 300, "10 mx2.best.test."],
        ],
        "servfail": list(servfail),
    }


class MxRouting(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.mx1 = harness.Sink(self.dir, "mx1", host="127.0.0.2")
        self.mx2 = harness.Sink(self.dir, "mx2", host="127.0.0.3", port=self.mx1.port)
        self.static = harness.Sink(self.dir, "static")
        self.dns = DnsServer(self.dir, zone(servfail=["flaky.test."]))
        self.spate = harness.Spate(
            self.dir, {"routed.test": self.static.port}, shards=2, log_deliveries=True,
            delivery={"mx_port": self.mx1.port, "prohibited_networks": [],
                      "retry_base": "500ms", "retry_max": "1s", "idle_timeout": "500ms"},
            dns={"nameservers": [f"127.0.0.1:{self.dns.port}"], "timeout": "3s",
                 "negative_ttl": "1s"})
        self.spate.start()

    def tearDown(self):
        self.spate.stop()
        for s in (self.mx1, self.mx2, self.static):
            s.stop()
        self.dns.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def send(self, rcpt, n):
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
            self.assertEqual(smtp.sendmail("s@campaign.test", [rcpt],
                                           f"Subject: {n}\r\nX-Seq: {n}\r\n\r\nhi\r\n"), {})

    def rcpts(self, sink):
        return sorted(r for rs, _ in sink.transactions() for r in rs)

    def test_mx_routing(self):
        self.send("a@best.test", 1)
        self.send("b@implicit.test", 2)
        self.send("c@nomail.test", 3)
        self.send("d@gone.test", 4)
        self.send("e@routed.test", 5)
        self.send("f@flaky.test", 6)
        self.send("g@failover.test", 7)
        # The best MX takes best.test; implicit.test, with no MX, goes to its own address.
        self.mx1.wait_for_rcpt("a@best.test")
        self.mx2.wait_for_rcpt("b@implicit.test")
        # The best MX refuses: the same attempt goes on to the next one (no deferral).
        self.mx2.wait_for_rcpt("g@failover.test")
        # A static route wins over the domain's MX.
        self.static.wait_for_rcpt("e@routed.test")
        # Null MX and NXDOMAIN: failed at once, nothing sent anywhere.
        log = self.spate.wait_for_log(r"failed .*rcpt=<c@nomail\.test>.*556 5\.1\.10")
        log = self.spate.wait_for_log(r"failed .*rcpt=<d@gone\.test>.*550 5\.1\.2")
        # SERVFAIL: deferred with 4.4.3 ...
        self.spate.wait_for_log(r"deferred .*rcpt=<f@flaky\.test>.*451 4\.4\.3")
        self.assertNotIn("f@flaky.test", self.rcpts(self.mx1))
        # ... and delivered once the DNS answers.
        self.dns.set_zone(zone())
        self.mx1.wait_for_rcpt("f@flaky.test", timeout=30)
        harness.wait_for(lambda: self.spate.metric("spate_spool_messages") == 0, 30,
                         "an empty spool")
        self.assertEqual(self.rcpts(self.mx1), ["a@best.test", "f@flaky.test"])
        # The two that failed came back to their sender, one DSN each, through its MX.
        self.assertEqual(self.rcpts(self.mx2),
                         ["b@implicit.test", "g@failover.test", "s@campaign.test",
                          "s@campaign.test"])
        dsns = [text for rs, text in self.mx2.transactions() if rs == ["s@campaign.test"]]
        self.assertEqual(sorted(re.search(r"Final-Recipient: rfc822; (\S+)", t).group(1)
                                for t in dsns), ["c@nomail.test", "d@gone.test"])
        self.assertNotRegex(self.spate.read_log(), r"deferred .*rcpt=<g@failover\.test>",
                            "failed over within the attempt, not deferred")
        self.assertEqual(self.rcpts(self.static), ["e@routed.test"])
        self.assertEqual(self.spate.metric("spate_deliveries_total", domain="nomail.test",
                                           outcome="failed"), 1)
        self.assertEqual(self.spate.metric("spate_deliveries_total", domain="gone.test",
                                           outcome="failed"), 1)
        # The DNS metrics say what was asked and what came back.
        m = self.spate.metric
        self.assertGreaterEqual(m("spate_dns_lookups_total", type="MX", result="ok"), 4)
        self.assertEqual(m("spate_dns_lookups_total", type="MX", result="nxdomain"), 1)
        self.assertGreaterEqual(m("spate_dns_lookups_total", type="MX", result="servfail"), 1)
        self.assertEqual(m("spate_dns_lookups_total", type="MX", result="nodata"), 1)  # implicit
        self.assertGreaterEqual(m("spate_dns_lookups_total", type="A", result="ok"), 3)
        self.assertGreaterEqual(m("spate_mx_routes_failed_total"), 3)  # null MX, NXDOMAIN, SERVFAIL
        self.assertGreaterEqual(m("spate_mx_routes_resolved_total"), 4)
        # Another message to a domain routed a moment ago, once spate has forgotten the idle
        # destination (two sweeps of idle_timeout): its route comes from the cache, no lookup.
        time.sleep(2.5)
        mx_lookups = m("spate_dns_lookups_total", type="MX")
        hits = m("spate_mx_route_cache_hits_total")
        self.send("h@best.test", 8)
        self.mx1.wait_for_rcpt("h@best.test")
        self.assertEqual(m("spate_dns_lookups_total", type="MX"), mx_lookups)
        self.assertEqual(m("spate_mx_route_cache_hits_total"), hits + 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
