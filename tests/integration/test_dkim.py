"""DKIM signing end to end (issue 12): messages submitted over SMTP leave spate signed, with
RSA-2048 and Ed25519 together for one domain, and every signature is verified by an
independent verifier, Debian's python3-dkim (dkimpy: RFC 6376 and RFC 8463), on what the next
hop received: folded headers, runs of whitespace, trailing empty lines, 8-bit bodies and lines
starting with a dot. A From: subdomain is signed by its parent's entry; a From: domain without
an entry is not signed; the stored message is the signed one (a retry sends the same bytes);
a bad key file stops the start naming the file, and --check-config says so too.
Temporary directories and loopback only; every wait has a deadline.
"""
import base64
import json
import os
import re
import shutil
import signal
import smtplib
import socketserver
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

VERIFY = os.path.join(os.path.dirname(__file__), "..", "dkim", "verify.py")
# Debian's interpreter: python3-dkim is installed for it (deploy/install-deps.sh), whichever
# python3 runs this test.
SYSTEM_PYTHON = "/usr/bin/python3"


class MessageSink:
    """An SMTP server on loopback that keeps each message as received (dot-unstuffed), and can
    defer the first transactions with a 451 after their data."""

    def __init__(self, defer_first=0):
        self.messages = []  # (rcpts, bytes)
        self.lock = threading.Lock()
        self.defer_left = defer_first
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                f, w = self.rfile, self.wfile
                w.write(b"220 sink.test ESMTP\r\n")
                rcpts = []
                while True:
                    line = f.readline()
                    if not line:
                        return
                    verb = line.split(b" ", 1)[0].strip().upper()
                    if verb in (b"EHLO", b"HELO"):
                        w.write(b"250-sink.test\r\n250-8BITMIME\r\n250 PIPELINING\r\n")
                    elif verb == b"MAIL":
                        rcpts = []
                        w.write(b"250 2.1.0 ok\r\n")
                    elif verb == b"RCPT":
                        rcpts.append(line[line.index(b"<") + 1:line.index(b">")].decode())
                        w.write(b"250 2.1.5 ok\r\n")
                    elif verb == b"DATA":
                        w.write(b"354 go\r\n")
                        w.flush()
                        data = []
                        while True:
                            d = f.readline()
                            if not d or d == b".\r\n":
                                break
                            data.append(d[1:] if d.startswith(b".") else d)
                        with sink.lock:
                            sink.messages.append((list(rcpts), b"".join(data)))
                            defer = sink.defer_left > 0
                            sink.defer_left -= 1 if defer else 0
                        w.write(b"451 4.3.0 try again\r\n" if defer else b"250 2.0.0 ok\r\n")
                    elif verb == b"QUIT":
                        w.write(b"221 2.0.0 bye\r\n")
                        return
                    else:
                        w.write(b"250 2.0.0 ok\r\n")
                    w.flush()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, rcpt):
        with self.lock:
            return [m for rs, m in self.messages if rcpt in rs]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def make_keys(directory):
    """An RSA-2048 and an Ed25519 key (PEM files), and their DNS TXT records (RFC 6376 §3.6.1,
    RFC 8463 §4: the raw 32-byte Ed25519 public key)."""
    rsa = os.path.join(directory, "rsa.pem")
    ed = os.path.join(directory, "ed25519.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", rsa], check=True, capture_output=True)
    subprocess.run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", ed], check=True,
                   capture_output=True)

    def spki(path):
        return subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                              check=True, capture_output=True).stdout
    rsa_txt = "v=DKIM1; k=rsa; p=" + base64.b64encode(spki(rsa)).decode()
    ed_txt = "v=DKIM1; k=ed25519; p=" + base64.b64encode(spki(ed)[-32:]).decode()
    return rsa, ed, rsa_txt, ed_txt


def verify(message, records):
    """dkimpy's verdict on every DKIM-Signature of `message`: [(d, s, a, ok, why)]. `records`:
    {"s1._domainkey.shop.test": "v=DKIM1; ..."}."""
    with harness_tmp() as d:
        path = os.path.join(d, "message.eml")
        with open(path, "wb") as f:
            f.write(message)
        keys = os.path.join(d, "keys.json")
        with open(keys, "w") as f:
            json.dump(records, f)
        r = subprocess.run([SYSTEM_PYTHON, VERIFY, "--all", path, keys], capture_output=True,
                           text=True, timeout=60)
        if r.returncode not in (0, 1):
            raise AssertionError(f"verify.py failed: {r.stderr}")
        return [tuple(x) for x in json.loads(r.stdout)]


class harness_tmp:
    def __enter__(self):
        self.dir = harness.tempdir()
        return self.dir

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


def send(port, sender, rcpts, body, mail_options=()):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        refused = smtp.sendmail(sender, rcpts, body, mail_options=list(mail_options))
        assert not refused, refused


# The hard cases of RFC 6376 §3.4 canonicalization, in one message: a folded header with runs
# of blanks, blanks at line ends, a header name in odd case, an 8-bit body, lines that start
# with a dot (stuffed on the wire, not in the signed text), runs of blanks in the body and
# empty lines at its end.
HARD = (b"From:   Shop  Team <news@shop.test>\r\n"
        b"To: bob@dest.test,\r\n"
        b"   carol@dest.test  \r\n"
        b"SUBJECT:  Spring\t  sale,\r\n"
        b"\tfolded   twice\r\n"
        b"  and  again \r\n"
        b"Date: Tue, 01 Dec 2026 19:00:00 +0000\r\n"
        b"Message-ID: <hard-1@shop.test>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"List-Unsubscribe: <mailto:unsub@shop.test>\r\n"
        b"X-Not-Signed: this header is not in h=\r\n"
        b"\r\n"
        b"Gr\xc3\xbc\xc3\x9fe  aus   M\xc3\xbcnchen \t \r\n"
        b".a line that starts with a dot\r\n"
        b"..and one with two\r\n"
        b".\tdot and tab\r\n"
        b"latin-1 \xe9t\xe9\r\n"
        b"\r\n"
        b"\r\n"
        b"\r\n")


class Dkim(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.sink = MessageSink()
        self.spate = None
        self.rsa, self.ed, rsa_txt, ed_txt = make_keys(self.dir)
        self.records = {"s1._domainkey.shop.test": rsa_txt, "s2._domainkey.shop.test": ed_txt,
                        "esp._domainkey.esp.test": ed_txt}

    def tearDown(self):
        if self.spate:
            self.spate.stop()
        self.sink.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, entries=None, routes=None, **kw):
        if entries is None:
            entries = [{"domain": "shop.test", "selector": "s1", "key": self.rsa},
                       {"domain": "shop.test", "selector": "s2", "key": self.ed}]
        extra = "".join("\n[[dkim]]\n" + "".join(f"{k} = {harness._toml_value(v)}\n"
                                                 for k, v in e.items())
                        for e in entries)
        spate = harness.Spate(self.dir, routes or {"dest.test": self.sink.port},
                              log_deliveries=True, **kw)
        with open(spate.config, "a") as f:
            f.write(extra)
        self.spate = spate
        return spate

    def delivered(self, rcpt, n=1):
        return harness.wait_for(lambda: self.sink.of(rcpt) if len(self.sink.of(rcpt)) >= n
                                else None, 30, f"{n} deliveries to {rcpt}")

    def test_rsa_and_ed25519_signatures_verify_on_hard_messages(self):
        spate = self.start()
        spate.start()
        send(spate.smtp_port, "news@shop.test", ["bob@dest.test"], HARD,
             mail_options=["BODY=8BITMIME"])
        plain = (b"From: news@shop.test\r\nTo: bob@dest.test\r\nSubject: short\r\n\r\nhi\r\n")
        send(spate.smtp_port, "news@shop.test", ["carol@dest.test"], plain)
        nobody = b"From: news@shop.test\r\nSubject: no body at all\r\n\r\n"
        send(spate.smtp_port, "news@shop.test", ["dave@dest.test"], nobody)
        for rcpt in ("bob@dest.test", "carol@dest.test", "dave@dest.test"):
            message = self.delivered(rcpt)[0]
            results = verify(message, self.records)
            self.assertEqual(sorted((d, s, a) for d, s, a, _, _ in results),
                             [("shop.test", "s1", "rsa-sha256"),
                              ("shop.test", "s2", "ed25519-sha256")], rcpt)
            for d, s, a, ok, why in results:
                self.assertTrue(ok, f"{rcpt}: {a} s={s} does not verify: {why}")
        signed = self.delivered("bob@dest.test")[0]
        headers = signed.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        self.assertIn("c=relaxed/relaxed", headers)
        h = re.search(r"(?:^|;)h=([^;]+);", re.sub(r"\s+", "", headers)).group(1).lower().split(":")
        self.assertEqual(h.count("from"), 2, f"From oversigned: {h}")
        for name in ("to", "subject", "date", "message-id", "mime-version", "content-type",
                     "content-transfer-encoding", "list-unsubscribe"):
            self.assertIn(name, h)
        self.assertNotIn("x-not-signed", h)
        # Tampered with on the way, it no longer verifies: the verifier is not a rubber stamp.
        tampered = signed.replace(b"Spring", b"Autumn", 1)
        self.assertFalse(any(ok for *_, ok, _ in verify(tampered, self.records)))
        body_changed = signed.replace(b"M\xc3\xbcnchen", b"Berlin", 1)
        self.assertFalse(any(ok for *_, ok, _ in verify(body_changed, self.records)))
        self.assertEqual(spate.metric("spate_dkim_signed_total", domain="shop.test",
                                      algorithm="rsa-sha256"), 3)
        self.assertEqual(spate.metric("spate_dkim_signed_total", domain="shop.test",
                                      algorithm="ed25519-sha256"), 3)
        self.assertEqual(spate.metric("spate_dkim_failures_total"), 0)

    def test_a_subdomain_is_signed_by_its_parent_and_an_unknown_domain_not_at_all(self):
        spate = self.start(entries=[
            {"domain": "shop.test", "selector": "s1", "key": self.rsa}])
        spate.start()
        send(spate.smtp_port, "a@mail.shop.test", ["sub@dest.test"],
             b"From: Sub <a@Mail.Shop.Test>\r\nSubject: sub\r\n\r\nhello\r\n")
        send(spate.smtp_port, "a@other.test", ["other@dest.test"],
             b"From: a@other.test\r\nSubject: other\r\n\r\nhello\r\n")
        results = verify(self.delivered("sub@dest.test")[0], self.records)
        self.assertEqual([(d, s, ok) for d, s, _, ok, _ in results], [("shop.test", "s1", True)])
        other = self.delivered("other@dest.test")[0]
        self.assertNotIn(b"DKIM-Signature", other, "no entry for other.test: not signed")

    def test_a_default_entry_signs_what_has_no_entry_of_its_own(self):
        spate = self.start(entries=[
            {"domain": "shop.test", "selector": "s1", "key": self.rsa},
            {"domain": "esp.test", "selector": "esp", "key": self.ed, "default": True}])
        spate.start()
        send(spate.smtp_port, "a@client.test", ["c@dest.test"],
             b"From: a@client.test\r\nSubject: via the ESP\r\n\r\nhello\r\n")
        send(spate.smtp_port, "a@shop.test", ["s@dest.test"],
             b"From: a@shop.test\r\nSubject: own\r\n\r\nhello\r\n")
        self.assertEqual([(d, s, ok) for d, s, _, ok, _ in
                          verify(self.delivered("c@dest.test")[0], self.records)],
                         [("esp.test", "esp", True)])
        self.assertEqual([(d, s, ok) for d, s, _, ok, _ in
                          verify(self.delivered("s@dest.test")[0], self.records)],
                         [("shop.test", "s1", True)], "its own entry, not the default")

    def test_a_retry_sends_the_same_signed_bytes(self):
        self.sink.defer_left = 1
        spate = self.start(delivery={"retry_base": "300ms"})
        spate.start()
        send(spate.smtp_port, "news@shop.test", ["retry@dest.test"],
             b"From: news@shop.test\r\nSubject: again\r\n\r\nonce\r\n")
        first, second = self.delivered("retry@dest.test", 2)[:2]
        self.assertEqual(first, second, "signed once, before the commit")
        self.assertEqual(first.count(b"DKIM-Signature:"), 2)

    def test_sighup_loads_new_keys_and_keeps_the_running_ones_for_a_bad_file(self):
        spate = self.start(entries=[{"domain": "shop.test", "selector": "s1", "key": self.rsa}])
        spate.start()
        base = open(spate.config).read().split("\n[[dkim]]")[0]

        def reload_with(entries, log_pattern):
            with open(spate.config, "w") as f:
                f.write(base + "".join(
                    "\n[[dkim]]\n" + "".join(f"{k} = {harness._toml_value(v)}\n"
                                              for k, v in e.items()) for e in entries))
            spate.proc.send_signal(signal.SIGHUP)
            spate.wait_for_log(log_pattern, 10)

        def signed_with(rcpt):
            send(spate.smtp_port, "news@shop.test", [rcpt],
                 b"From: news@shop.test\r\nSubject: keys\r\n\r\nhello\r\n")
            return [(s, ok) for _, s, _, ok, _ in verify(self.delivered(rcpt)[0], self.records)]

        self.assertEqual(signed_with("one@dest.test"), [("s1", True)])
        reload_with([{"domain": "shop.test", "selector": "s2", "key": self.ed}],
                    r"reloaded: .*1 dkim keys")
        self.assertEqual(signed_with("two@dest.test"), [("s2", True)])
        missing = os.path.join(self.dir, "gone.pem")
        reload_with([{"domain": "shop.test", "selector": "s1", "key": missing}],
                    r"reload refused: \[\[dkim\]\] .*gone\.pem.*the running keys stay")
        self.assertEqual(signed_with("three@dest.test"), [("s2", True)])

    def test_a_bad_key_file_is_refused_at_start_naming_it(self):
        garbage = os.path.join(self.dir, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        missing = os.path.join(self.dir, "missing.pem")
        for key in (garbage, missing):
            spate = self.start(entries=[{"domain": "shop.test", "selector": "s1", "key": key}])
            check = subprocess.run([harness.SPATE, "--check-config", "--config", spate.config],
                                   capture_output=True, text=True, timeout=30)
            self.assertEqual(check.returncode, 2, check.stdout + check.stderr)
            self.assertIn(key, check.stderr)
            run = subprocess.run([harness.SPATE, "--config", spate.config],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(run.returncode, 2)
            self.assertIn(key, run.stderr)
            self.assertIn("dkim", run.stderr)
            self.spate = None


if __name__ == "__main__":
    unittest.main()
