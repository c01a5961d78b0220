"""tests/dns/dnssec.py against a real validator: Debian's unbound-host (libunbound, the library
spate resolves with), forwarding to the SignedZones nsd on loopback with its trust-anchor file,
as spate's DANE tests will. What is checked: the signed zone's MX, A and TLSA validate as
secure, and so does the denial of a TLSA that is not there (DANE needs it authenticated); the
RRset whose RRSIG was corrupted is bogus; the unsigned zone is insecure.

Run from tests/dns: /usr/bin/python3 -m unittest test_dnssec_zone -v
Needs nsd, ldnsutils, unbound-host (deploy/install-deps.sh).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dnssec import SignedZones  # noqa: E402

TLSA_HEX = "8cb0fc6c527506a053f4f14c8464bebbd6dede2738d11468dd953d7d6a3021f1"


class SignedZoneValidates(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="spate-dnssec-")
        cls.zones = SignedZones(cls.dir, {
            "dane.test": [
                "dane.test. 300 IN MX 10 mx.dane.test.",
                "mx.dane.test. 300 IN A 127.0.0.3",
                f"_25._tcp.mx.dane.test. 300 IN TLSA 3 1 1 {TLSA_HEX}",
                "bad.dane.test. 300 IN A 127.0.0.4",
                f"_25._tcp.bad.dane.test. 300 IN TLSA 3 1 1 {TLSA_HEX}",
            ],
            "plain.test": [
                "plain.test. 300 IN MX 10 mx.plain.test.",
                "mx.plain.test. 300 IN A 127.0.0.5",
            ],
        }, signed={"dane.test"}, bogus={"_25._tcp.bad.dane.test.": "TLSA"})
        cls.conf = os.path.join(cls.dir, "unbound.conf")
        with open(cls.conf, "w") as f:
            # A forwarder on loopback (do-not-query-localhost: no lets it be 127.0.0.1);
            # "test." is one of unbound's default local zones (RFC 6761: always NXDOMAIN)
            # unless told nodefault. spate's libunbound context needs the same two options.
            f.write(f"""server:
    do-not-query-localhost: no
    local-zone: "test." nodefault
    trust-anchor-file: "{cls.zones.trust_anchor_file}"
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{cls.zones.port}
""")

    @classmethod
    def tearDownClass(cls):
        cls.zones.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def lookup(self, name, rtype):
        """unbound-host -v's output for one query: it ends each line with (secure), (insecure)
        or (BOGUS (security failure))."""
        r = subprocess.run(["unbound-host", "-C", self.conf, "-v", "-t", rtype, name],
                           capture_output=True, text=True, timeout=20)
        return r.stdout + r.stderr

    def test_port_is_loopback_not_53(self):
        self.assertNotEqual(self.zones.port, 53)

    def test_signed_records_are_secure(self):
        for name, rtype, data in [("dane.test", "MX", "10 mx.dane.test."),
                                  ("mx.dane.test", "A", "127.0.0.3"),
                                  ("_25._tcp.mx.dane.test", "TLSA", "")]:
            with self.subTest(name=name, rtype=rtype):
                out = self.lookup(name, rtype)
                self.assertIn("(secure)", out)
                self.assertIn(data, out)
                self.assertNotIn("BOGUS", out)

    def test_missing_tlsa_is_a_secure_denial(self):
        out = self.lookup("_25._tcp.nothere.dane.test", "TLSA")
        self.assertIn("NXDOMAIN", out)
        self.assertIn("(secure)", out)
        out = self.lookup("_25._tcp.mx.dane.test", "A")  # the name exists: NODATA
        self.assertIn("has no address", out)
        self.assertIn("(secure)", out)

    def test_corrupted_signature_is_bogus(self):
        out = self.lookup("_25._tcp.bad.dane.test", "TLSA")
        self.assertIn("BOGUS", out)
        self.assertIn("signature verification failed", out)
        # The rest of the zone is untouched.
        self.assertIn("(secure)", self.lookup("bad.dane.test", "A"))

    def test_plain_zone_is_insecure(self):
        for name, rtype in [("plain.test", "MX"), ("mx.plain.test", "A")]:
            with self.subTest(name=name):
                out = self.lookup(name, rtype)
                self.assertIn("(insecure)", out)
                self.assertNotIn("(secure)", out)


if __name__ == "__main__":
    unittest.main()
