"""STARTTLS, implicit TLS, AUTH and relay control against the real binary.

spate runs with the test certificate (tests/data/spate.test.{crt,key}), a users file made by
`spate --hash-password`, an implicit TLS port, and a route to smtp-sink. Clients are Python's
smtplib and ssl, swaks, and a raw socket where the exact bytes on the wire matter.
"""
import base64
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
CERT = os.path.join(DATA, "spate.test.crt")
KEY = os.path.join(DATA, "spate.test.key")
USER, PASSWORD = "alice@campaign.test", "correct horse battery staple"
DEST = "dest.test"  # routed to smtp-sink
SWAKS = shutil.which("swaks") or "/usr/bin/swaks"


def client_context(check_hostname=False):
    """Trusts only the test certificate. smtplib connects to "127.0.0.1", which is not the
    certificate's name, so host name checking is only on where the test names "spate.test"."""
    ctx = ssl.create_default_context(cafile=CERT)
    ctx.check_hostname = check_hostname
    return ctx


def b64(s):
    return base64.b64encode(s.encode()).decode()


def make_users_file(workdir):
    """The users file, one line made by `spate --hash-password USER`."""
    out = subprocess.run([harness.SPATE, "--hash-password", USER], input=PASSWORD + "\n",
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.startswith(USER + ":$pbkdf2-sha256$"), out
    path = os.path.join(workdir, "users")
    with open(path, "w") as f:
        f.write("# made by spate --hash-password\n" + out)
    return path


class Wire:
    """A raw SMTP client on a socket (plain or TLS): reads replies byte by byte, so nothing is
    read ahead of the reply asked for."""

    def __init__(self, sock):
        self.sock = sock

    def line(self):
        buf = b""
        while not buf.endswith(b"\r\n"):
            c = self.sock.recv(1)
            if not c:
                raise EOFError(f"connection closed after {buf!r}")
            buf += c
        return buf.decode()

    def reply(self):
        """(code, [lines]) of one possibly multi-line reply."""
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return int(lines[-1][:3]), [l.rstrip("\r\n") for l in lines]

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def silent(self, seconds=0.5):
        """True when the server sends nothing for `seconds`."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(100)
        except (socket.timeout, TimeoutError):
            return True
        finally:
            self.sock.settimeout(10)
        raise AssertionError(f"unexpected bytes from the server: {data!r}")

    def closed(self, seconds=5):
        """True once the server closes; any bytes meanwhile (a TLS alert) are ignored."""
        self.sock.settimeout(seconds)
        try:
            while True:
                if not self.sock.recv(4096):
                    return True
        except (ConnectionResetError, ssl.SSLError):
            return True
        except (socket.timeout, TimeoutError):
            return False


def starttls_wire(port):
    """A Wire after EHLO, STARTTLS and the handshake (verified: spate.test), before 2nd EHLO."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    w = Wire(sock)
    assert w.reply()[0] == 220
    assert w.cmd("EHLO client.test")[0] == 250
    code, lines = w.cmd("STARTTLS")
    assert code == 220, lines
    w.sock = client_context(check_hostname=True).wrap_socket(sock, server_hostname="spate.test")
    return w


class Base(unittest.TestCase):
    SERVER = {}
    AUTH = {}
    SHARDS = 2
    LOG_LEVEL = None

    @classmethod
    def setUpClass(cls):
        cls.dir = harness.tempdir()
        cls.sink = harness.Sink(cls.dir, "dest")
        auth = {"users_file": make_users_file(cls.dir)}
        auth.update(cls.AUTH)
        server = {"implicit_tls_listen": "127.0.0.1:0"}
        server.update(cls.SERVER)
        cls.spate = harness.Spate(
            cls.dir, {DEST: cls.sink.port}, shards=cls.SHARDS, server=server,
            sections={"tls": {"certificate": CERT, "key": KEY, "handshake_timeout": "1s"},
                      "auth": auth},
            log_level=cls.LOG_LEVEL)
        cls.spate.start()
        cls.port = cls.spate.smtp_port

    @classmethod
    def tearDownClass(cls):
        cls.spate.stop()
        cls.sink.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def delivered(self, rcpt):
        """The sink's dump of the transaction to `rcpt`, once it is there."""
        return self.sink.wait_for_rcpt(rcpt)

    def smtp(self):
        s = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
        s.ehlo("client.test")
        return s


class TlsAuth(Base):
    def test_starttls_offered_auth_only_after_it(self):
        with self.smtp() as s:
            self.assertTrue(s.has_extn("starttls"))
            self.assertFalse(s.has_extn("auth"), "no AUTH in the clear ([auth] plaintext off)")
            s.starttls(context=client_context())
            s.ehlo("client.test")
            self.assertFalse(s.has_extn("starttls"), "no STARTTLS twice")
            self.assertIn("PLAIN", s.esmtp_features.get("auth", "").upper().split())
            self.assertIn("LOGIN", s.esmtp_features.get("auth", "").upper().split())

    def send_with(self, mechanism, rcpt):
        with self.smtp() as s:
            s.starttls(context=client_context())
            s.ehlo("client.test")
            s.user, s.password = USER, PASSWORD
            method = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login}[mechanism]
            code, text = s.auth(mechanism, method)
            self.assertEqual(code, 235, text)
            self.assertTrue(text.startswith(b"2.7.0"), text)
            refused = s.sendmail("sender@campaign.test", [rcpt],
                                 f"Subject: {mechanism}\r\n\r\nover TLS\r\n")
            self.assertEqual(refused, {})
        self.assertIn("over TLS", self.delivered(rcpt))

    def test_smtplib_auth_plain(self):
        self.send_with("PLAIN", f"plain@{DEST}")

    def test_smtplib_auth_login(self):
        self.send_with("LOGIN", f"login@{DEST}")

    def test_received_header_says_esmtpsa(self):
        # RFC 3848: "with ESMTPSA" for mail over TLS from an authenticated client.
        self.send_with("PLAIN", f"received@{DEST}")
        self.assertRegex(self.delivered(f"received@{DEST}"), r"with ESMTPSA")

    def swaks(self, mechanism, rcpt):
        r = subprocess.run(
            [SWAKS, "--server", "127.0.0.1", "--port", str(self.port), "--tls",
             "--auth", mechanism, "--auth-user", USER, "--auth-password", PASSWORD,
             "--from", "sender@campaign.test", "--to", rcpt, "--helo", "client.test",
             "--timeout", "20"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("<~  235 2.7.0", r.stdout)
        self.delivered(rcpt)

    def test_swaks_tls_auth_plain(self):
        self.swaks("PLAIN", f"swaks-plain@{DEST}")

    def test_swaks_tls_auth_login(self):
        self.swaks("LOGIN", f"swaks-login@{DEST}")

    def test_wrong_password_and_unknown_user_get_the_same_535(self):
        replies = []
        for user, password in [(USER, "wrong"), ("nobody@campaign.test", PASSWORD)]:
            with self.smtp() as s:
                s.starttls(context=client_context())
                s.ehlo("client.test")
                code, text = s.docmd("AUTH", "PLAIN " + b64(f"\0{user}\0{password}"))
                self.assertEqual(code, 535, text)
                self.assertTrue(text.startswith(b"5.7.8"), text)
                replies.append(text)
        self.assertEqual(replies[0], replies[1], "the reply must not tell which users exist")

    def test_auth_before_starttls_gets_538(self):
        # RFC 4954 §4 and §6: 538 5.7.11 Encryption required.
        with self.smtp() as s:
            code, text = s.docmd("AUTH", "PLAIN " + b64(f"\0{USER}\0{PASSWORD}"))
            self.assertEqual(code, 538, text)
            self.assertTrue(text.startswith(b"5.7.11"), text)

    def test_implicit_tls_port(self):
        self.assertIsNotNone(self.spate.smtps_port, "ready line names the implicit TLS port")
        # Raw: the handshake comes first, then the greeting, inside TLS.
        ctx = client_context(check_hostname=True)
        with socket.create_connection(("127.0.0.1", self.spate.smtps_port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="spate.test") as tls:
                self.assertIn(tls.version(), ("TLSv1.2", "TLSv1.3"))
                w = Wire(tls)
                code, lines = w.reply()
                self.assertEqual(code, 220, lines)
                code, lines = w.cmd("EHLO client.test")
                self.assertEqual(code, 250)
                self.assertFalse(any("STARTTLS" in l for l in lines), lines)
        # smtplib.SMTP_SSL: AUTH is offered at once, and mail goes through.
        rcpt = f"implicit@{DEST}"
        with smtplib.SMTP_SSL("127.0.0.1", self.spate.smtps_port, context=client_context(),
                              timeout=30) as s:
            s.ehlo("client.test")
            self.assertTrue(s.has_extn("auth"))
            s.login(USER, PASSWORD)
            self.assertEqual(s.sendmail("sender@campaign.test", [rcpt],
                                        "Subject: 465\r\n\r\nimplicit\r\n"), {})
        self.assertIn("implicit", self.delivered(rcpt))

    def test_implicit_tls_port_refuses_plaintext(self):
        with socket.create_connection(("127.0.0.1", self.spate.smtps_port), timeout=10) as s:
            w = Wire(s)
            w.silent(0.3)  # no greeting in the clear
            s.sendall(b"EHLO client.test\r\n")
            self.assertTrue(w.closed(), "a plaintext client on the TLS port is disconnected")

    def test_starttls_injection_cve_2011_0411(self):
        # "STARTTLS\r\nRSET\r\n" in one packet: the RSET must be dropped, not answered inside
        # the TLS session as if the client had sent it there.
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        w = Wire(sock)
        self.assertEqual(w.reply()[0], 220)
        self.assertEqual(w.cmd("EHLO client.test")[0], 250)
        sock.sendall(b"STARTTLS\r\nRSET\r\n")
        code, lines = w.reply()
        self.assertEqual(code, 220, lines)
        self.assertTrue(w.silent(0.3), "nothing else in the clear")
        w.sock = client_context(check_hostname=True).wrap_socket(sock,
                                                                 server_hostname="spate.test")
        self.assertTrue(w.silent(0.5), "no reply to the injected RSET")
        code, lines = w.cmd("EHLO client.test")
        self.assertEqual(code, 250)
        self.assertTrue(lines[0].startswith("250-spate.test"), lines)
        self.assertTrue(w.silent(0.5), "only EHLO's reply")
        self.assertEqual(w.cmd("QUIT")[0], 221)
        w.sock.close()

    def test_garbage_instead_of_a_handshake_closes(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        w = Wire(sock)
        w.reply()
        w.cmd("EHLO client.test")
        self.assertEqual(w.cmd("STARTTLS")[0], 220)
        sock.sendall(b"MAIL FROM:<x@y.test>\r\n")
        self.assertTrue(w.closed())
        sock.close()

    def test_handshake_timeout_closes(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        w = Wire(sock)
        w.reply()
        w.cmd("EHLO client.test")
        self.assertEqual(w.cmd("STARTTLS")[0], 220)
        self.assertTrue(w.closed(seconds=5), "closed after [tls] handshake_timeout = 1s")
        sock.close()

    def test_bad_certificate_file_stops_the_start(self):
        config = os.path.join(self.dir, "bad.toml")
        missing = os.path.join(self.dir, "missing.crt")
        with open(config, "w") as f:
            f.write(f'[tls]\ncertificate = "{missing}"\nkey = "{KEY}"\n')
        r = subprocess.run([harness.SPATE, "--config", config, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(missing, r.stderr)


class AuthLockout(Base):
    AUTH = {"max_failures": 3}
    SHARDS = 2

    def test_421_after_max_failures(self):
        w = starttls_wire(self.port)
        self.assertEqual(w.cmd("EHLO client.test")[0], 250)
        bad = "AUTH PLAIN " + b64(f"\0{USER}\0wrong")
        for _ in range(2):
            code, lines = w.cmd(bad)
            self.assertEqual(code, 535, lines)
        code, lines = w.cmd(bad)
        self.assertEqual(code, 535, lines)
        code, lines = w.reply()
        self.assertEqual(code, 421, lines)
        self.assertTrue(lines[0].startswith("421 4.7.0"), lines)
        self.assertTrue(w.closed())
        w.sock.close()
        # The address stays blocked: even the right password now gets 421.
        w = starttls_wire(self.port)
        self.assertEqual(w.cmd("EHLO client.test")[0], 250)
        code, lines = w.cmd("AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}"))
        self.assertEqual(code, 421, lines)
        self.assertTrue(w.closed())
        w.sock.close()


class AuthLockoutAcrossShards(Base):
    """The failure count is one table for all shards: failures on connections that the kernel
    gave to different shards add up to max_failures. Each connection's shard is read from the
    debug log ("accepted a connection from ... on shard N") before it sends anything."""
    AUTH = {"max_failures": 3}
    SHARDS = 2
    LOG_LEVEL = "debug"

    def accepted_shards(self):
        return [int(n) for n in re.findall(r"accepted a connection from \S+ on shard (\d+)",
                                           self.spate.read_log())]

    def wire_on(self, shard):
        """A Wire after STARTTLS and the second EHLO, on `shard`: connections the kernel gives
        the other shard are ended with QUIT and a new one is made."""
        for _ in range(200):
            seen = len(self.accepted_shards())
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            w = Wire(sock)
            self.assertEqual(w.reply()[0], 220)  # the accept line is written before it
            got = harness.wait_for(lambda: self.accepted_shards()[seen:], 10, "the accept line")
            if got[0] != shard:
                w.cmd("QUIT")
                sock.close()
                continue
            self.assertEqual(w.cmd("EHLO client.test")[0], 250)
            self.assertEqual(w.cmd("STARTTLS")[0], 220)
            w.sock = client_context(check_hostname=True).wrap_socket(
                sock, server_hostname="spate.test")
            self.assertEqual(w.cmd("EHLO client.test")[0], 250)
            return w
        self.fail(f"no connection landed on shard {shard}")

    def test_failures_spread_over_shards_add_up(self):
        bad = "AUTH PLAIN " + b64(f"\0{USER}\0wrong")
        # One failure on each shard: with a table per shard neither would be near 3.
        for shard in (0, 1):
            w = self.wire_on(shard)
            code, lines = w.cmd(bad)
            self.assertEqual(code, 535, lines)
            self.assertEqual(w.cmd("QUIT")[0], 221)
            w.sock.close()
        # The third, on shard 0 (which has seen only two): 535, then 421 and close.
        w = self.wire_on(0)
        code, lines = w.cmd(bad)
        self.assertEqual(code, 535, lines)
        code, lines = w.reply()
        self.assertEqual(code, 421, lines)
        self.assertTrue(lines[0].startswith("421 4.7.0"), lines)
        self.assertTrue(w.closed())
        w.sock.close()
        # Locked out on both shards, even with the right password.
        for shard in (1, 0):
            w = self.wire_on(shard)
            code, lines = w.cmd("AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}"))
            self.assertEqual(code, 421, lines)
            self.assertTrue(w.closed())
            w.sock.close()
        harness.wait_for(lambda: len(re.findall(r"auth failed: ", self.spate.read_log())) >= 3,
                         10, "three auth failures logged")
        failed = re.findall(r"auth failed: .* shard=(\d+)", self.spate.read_log())
        self.assertEqual(sorted(failed), ["0", "0", "1"], "three failures, on both shards")


class RelayControl(Base):
    # 127.0.0.1 is NOT a relay network here (no traffic goes to 10.x: it is only a value).
    SERVER = {"relay_networks": ["10.255.255.0/24"], "local_domains": ["local.test"]}

    def test_foreign_rcpt_needs_auth(self):
        with self.smtp() as s:
            s.starttls(context=client_context())
            s.ehlo("client.test")
            self.assertEqual(s.mail("sender@campaign.test")[0], 250)
            code, text = s.rcpt(f"stranger@{DEST}")
            self.assertEqual(code, 550, text)
            self.assertTrue(text.startswith(b"5.7.1"), text)
            code, text = s.rcpt("postmaster@local.test")
            self.assertEqual(code, 250, "local domains take mail from anyone")
            s.rset()
            s.login(USER, PASSWORD)
            self.assertEqual(s.mail("sender@campaign.test")[0], 250)
            code, text = s.rcpt(f"stranger@{DEST}")
            self.assertEqual(code, 250, text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
