"""DANE (RFC 7672, issue 14) against a DNSSEC-signed zone served by Debian's nsd (signed by
ldns-signzone, tests/dns/dnssec.py) with spate's libunbound validating it from the zone's trust
anchor, and a STARTTLS sink on loopback: a DANE-EE record (3 1 1) that matches the sink's key
delivers over TLS; one that does not match defers, and nothing is delivered; a TLSA RRset with a
bogus signature defers (never plaintext); the same TLSA record in an unsigned zone counts for
nothing (delivered as opportunistic TLS); records that are all unusable for SMTP (PKIX usages)
make TLS mandatory without authenticating it. The metrics say which policy each job went by.
"""
import hashlib
import json
import os
import shutil
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "dns"))
import harness  # noqa: E402
from dnssec import SignedZones, Validator  # noqa: E402
from tls_sink import CERT, TlsSink  # noqa: E402


def spki_sha256(cert):
    """SHA-256 of the certificate's SubjectPublicKeyInfo (a 3 1 1 record's data), hex."""
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"], check=True,
                         capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub, check=True,
                         capture_output=True).stdout
    return hashlib.sha256(der).hexdigest()


class Dane(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        # Cleanups, not tearDown: they run when setUp itself fails halfway, too.
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.sink = TlsSink("127.0.0.3", mode="starttls")
        self.addCleanup(self.sink.stop)
        port = self.sink.port
        good = spki_sha256(CERT)
        wrong = hashlib.sha256(b"another key").hexdigest()
        signed = [
            "ee.dane.test. 300 IN MX 10 mx.dane.test.",
            "mx.dane.test. 300 IN A 127.0.0.3",
            f"_{port}._tcp.mx.dane.test. 300 IN TLSA 3 1 1 {good}",
            "mismatch.dane.test. 300 IN MX 10 mxbad.dane.test.",
            "mxbad.dane.test. 300 IN A 127.0.0.3",
            f"_{port}._tcp.mxbad.dane.test. 300 IN TLSA 3 1 1 {wrong}",
            "bogus.dane.test. 300 IN MX 10 mxbogus.dane.test.",
            "mxbogus.dane.test. 300 IN A 127.0.0.3",
            f"_{port}._tcp.mxbogus.dane.test. 300 IN TLSA 3 1 1 {good}",
            # PKIX-EE (usage 1) is not for SMTP (RFC 7672 §3.1.3): unusable, so TLS is mandatory
            # but not authenticated.
            "unusable.dane.test. 300 IN MX 10 mxunusable.dane.test.",
            "mxunusable.dane.test. 300 IN A 127.0.0.3",
            f"_{port}._tcp.mxunusable.dane.test. 300 IN TLSA 1 1 1 {wrong}",
            "none.dane.test. 300 IN MX 10 mxnone.dane.test.",
            "mxnone.dane.test. 300 IN A 127.0.0.3",
        ]
        plain = [
            "plain.test. 300 IN MX 10 mx.plain.test.",
            "mx.plain.test. 300 IN A 127.0.0.3",
            f"_{port}._tcp.mx.plain.test. 300 IN TLSA 3 1 1 {wrong}",
        ]
        self.zones = SignedZones(os.path.join(self.dir, "dns"),
                                 {"dane.test": signed, "plain.test": plain}, signed={"dane.test"},
                                 bogus={f"_{port}._tcp.mxbogus.dane.test.": "TLSA"})
        self.addCleanup(self.zones.stop)
        self.spate = harness.Spate(
            self.dir, {}, shards=2, log_deliveries=True,
            delivery={"mx_port": port, "prohibited_networks": [], "retry_base": "1s",
                      "retry_max": "1s", "tls_ca_file": CERT},
            dns=self.dns_config(),
            sections={"tlsrpt": {"enabled": True, "directory": os.path.join(self.dir, "tlsrpt"),
                                 "organization": "Spate Test"}})
        self.addCleanup(self.spate.stop)
        self.spate.start()

    # How the bogus TLSA lookup's failure reads in the log.
    bogus_failure = "failed (bogus"

    def dns_config(self):
        """spate's libunbound validates, from the zones' trust anchors."""
        return {"nameservers": [f"127.0.0.1:{self.zones.port}"], "timeout": "2s",
                "trust_anchor_file": self.zones.trust_anchor_file}


    def send(self, rcpt):
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
            self.assertEqual(smtp.sendmail("s@campaign.test", [rcpt], b"Subject: d\r\n\r\nhi\r\n"),
                             {})

    def delivered(self, rcpt):
        return [t for t in self.sink.transactions if rcpt in t[0]]

    def test_match_mismatch_bogus_and_unsigned(self):
        for d in ("ee.dane.test", "mismatch.dane.test", "bogus.dane.test", "none.dane.test",
                  "plain.test", "unusable.dane.test"):
            self.send(f"u@{d}")
        harness.wait_for(lambda: self.delivered("u@ee.dane.test"), 20, "DANE-EE match delivered")
        self.assertIsNotNone(self.delivered("u@ee.dane.test")[0][1], "over TLS")
        harness.wait_for(lambda: self.delivered("u@unusable.dane.test"), 20,
                         "unusable records: TLS, unauthenticated")
        self.assertIsNotNone(self.delivered("u@unusable.dane.test")[0][1], "over TLS")
        # No TLSA (a validated denial) and an unsigned zone: as without DANE.
        harness.wait_for(lambda: self.delivered("u@none.dane.test"), 20, "no TLSA: delivered")
        harness.wait_for(lambda: self.delivered("u@plain.test"), 20, "unsigned: delivered")
        m = self.spate.metric
        harness.wait_for(lambda: m("spate_deliveries_total", domain="mismatch.dane.test",
                                   outcome="deferred") >= 1, 20, "mismatch deferred")
        harness.wait_for(lambda: m("spate_deliveries_total", domain="bogus.dane.test",
                                   outcome="deferred") >= 1, 20, "bogus deferred")
        time.sleep(1.5)
        self.assertEqual(self.delivered("u@mismatch.dane.test"), [], "never without a match")
        self.assertEqual(self.delivered("u@bogus.dane.test"), [], "never in plaintext")
        log = self.spate.read_log()
        self.assertIn("DANE: no TLSA record matches the server's certificate", log)
        self.assertIn("the TLSA lookup of mxbogus.dane.test " + self.bogus_failure, log)
        self.assertGreaterEqual(m("spate_tls_policy_total", domain="ee.dane.test", policy="dane",
                                  result="ok"), 1)
        def records():
            with open(self.spate.records_path) as f:
                return {(r["type"], r.get("recipient")): r for r in map(json.loads, f)}
        harness.wait_for(lambda: ("Delivery", "u@plain.test") in records(), 10, "the records")
        by = records()
        self.assertIs(by[("Delivery", "u@ee.dane.test")].get("dane"), True)
        self.assertNotIn("dane", by[("Delivery", "u@plain.test")])
        self.assertGreaterEqual(m("spate_tls_policy_total", domain="mismatch.dane.test",
                                  policy="dane", result="mismatch"), 1)
        self.assertGreaterEqual(m("spate_tls_policy_total", domain="plain.test", policy="none",
                                  result="ok"), 1)
        self.assertGreaterEqual(m("spate_tls_policy_total", domain="none.dane.test",
                                  policy="none", result="ok"), 1)
        self.check_tlsrpt(spki=spki_sha256(CERT))

    def check_tlsrpt(self, spki):
        """The RFC 8460 report files, written when spate stops: one per DANE domain today."""
        self.spate.stop()
        day = time.strftime("%Y-%m-%d", time.gmtime())
        reports = os.path.join(self.dir, "tlsrpt", day)

        def report(domain):
            with open(os.path.join(reports, domain + ".json")) as f:
                doc = json.load(f)
            self.assertEqual(doc["organization-name"], "Spate Test")
            self.assertEqual(doc["date-range"]["start-datetime"], day + "T00:00:00Z")
            self.assertEqual(len(doc["policies"]), 1, doc)
            return doc["policies"][0]
        ee = report("ee.dane.test")
        self.assertEqual(ee["policy"]["policy-type"], "tlsa")
        self.assertEqual(ee["policy"]["policy-domain"], "ee.dane.test")
        self.assertEqual(ee["policy"]["policy-string"], [f"3 1 1 {spki}"])
        self.assertEqual(ee["policy"]["mx-host"], ["mx.dane.test"])
        self.assertGreaterEqual(ee["summary"]["total-successful-session-count"], 1)
        self.assertEqual(ee["summary"]["total-failure-session-count"], 0)
        bad = report("mismatch.dane.test")
        self.assertEqual(bad["summary"]["total-successful-session-count"], 0)
        self.assertGreaterEqual(bad["summary"]["total-failure-session-count"], 1)
        detail = bad["failure-details"][0]
        self.assertEqual(detail["result-type"], "validation-failure")
        self.assertEqual(detail["receiving-mx-hostname"], "mxbad.dane.test")
        self.assertEqual(detail["receiving-ip"], "127.0.0.3")
        self.assertTrue(detail["sending-mta-ip"].startswith("127."))
        self.assertIn("no TLSA record matches", detail["additional-information"])
        bogus = report("bogus.dane.test")["failure-details"][0]
        self.assertEqual(bogus["result-type"], "dnssec-invalid")
        self.assertEqual(bogus["receiving-mx-hostname"], "mxbogus.dane.test")
        unusable = report("unusable.dane.test")["failure-details"][0]
        self.assertEqual(unusable["result-type"], "tlsa-invalid")
        # No policy, no report.
        self.assertFalse(os.path.exists(os.path.join(reports, "plain.test.json")))
        self.assertFalse(os.path.exists(os.path.join(reports, "none.dane.test.json")))


    def test_a_missing_trust_anchor_file_stops_the_start_naming_it(self):
        config = os.path.join(self.dir, "bad.toml")
        with open(config, "w") as f:
            f.write('[dns]\ntrust_anchor_file = "/nonexistent/root.key"\n')
        r = subprocess.run([harness.SPATE, "--config", config, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("[dns] trust_anchor_file /nonexistent/root.key", r.stderr)


class DaneTrustAd(Dane):
    """The same cases with [dns] trust_ad: a validating unbound on loopback holds the trust
    anchors, and spate, without any, takes its AD bit as secure; a bogus TLSA RRset reaches
    spate as the validator's SERVFAIL."""

    bogus_failure = "failed (servfail"

    def dns_config(self):
        validator = Validator(os.path.join(self.dir, "unbound"), self.zones)
        self.addCleanup(validator.stop)
        return {"nameservers": [f"127.0.0.1:{validator.port}"], "timeout": "2s",
                "trust_ad": True}

    def test_a_missing_trust_anchor_file_stops_the_start_naming_it(self):
        self.skipTest("no trust anchors with trust_ad")

    def test_trust_ad_with_trust_anchors_is_refused(self):
        config = os.path.join(self.dir, "bad.toml")
        with open(config, "w") as f:
            f.write('[dns]\ntrust_ad = true\ntrust_anchor_file = "/usr/share/dns/root.key"\n')
        r = subprocess.run([harness.SPATE, "--config", config, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("trust_ad", r.stderr)


if __name__ == "__main__":
    unittest.main()
