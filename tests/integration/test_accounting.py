"""Accounting end to end, as an operator checks it: the records file ([log] records, JSON lines)
says what became of every recipient (Reception, Delivery, TransientFailure, Bounce, Expiration,
DSN, Suppressed, with the queue id of the 250 reply, the campaign of X-Campaign, the reply, the
peer and the bounce class), the metrics agree, a hard bounce puts the address on the suppression
list and a later RCPT TO for it is refused at once saying since when and why, `spate track ID`
tells each recipient's status beside a running spate and after it stopped, the records survive
kill -9 whole, and the live file rotates to at most records_keep zstd-compressed files.
Temporary directories and loopback only; every wait has a deadline.
"""
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from tls_sink import TlsSink  # noqa: E402

SENDER = "news@origin.test"
QUEUED_AS = re.compile(rb"queued as ([0-9A-Fa-f]{16})")
ROTATED = re.compile(r"^records\.jsonl\.\d{8}T\d{6}(\.\d+)?\.zst$")


def message(subject, campaign="spring-sale"):
    return (f"From: {SENDER}\r\nSubject: {subject}\r\nX-Campaign: {campaign}\r\n\r\n"
            f"hello {subject}\r\n").encode()


def submit(port, rcpts, body, sender=SENDER, smtp=None):
    """One transaction; returns (queue id from the 250 reply, {rcpt: (code, text)})."""
    own = smtp is None
    if own:
        smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
        smtp.ehlo("client.test")
    try:
        code, text = smtp.mail(sender)
        assert code == 250, (code, text)
        replies = {r: smtp.rcpt(r) for r in rcpts}
        code, text = smtp.data(body)
        assert code == 250, (code, text)
        m = QUEUED_AS.search(text)
        assert m, f"no queue id in the 250 reply: {text!r}"
        return m.group(1).decode().lower(), replies
    finally:
        if own:
            smtp.quit()


def read_records(path):
    """Every line of the records file, parsed (a line that does not parse fails the test)."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    return parse_lines(data, path)


def parse_lines(data, what):
    text = data.decode("utf-8")
    lines = text.split("\n")
    # A torn last line is still being written: it is not counted until its newline is there.
    out = []
    for n, line in enumerate(lines[:-1], 1):
        try:
            out.append(json.loads(line))
        except ValueError as e:
            raise AssertionError(f"{what} line {n} is not JSON ({e}): {line!r}")
    return out


def decompress(path):
    try:
        import zstandard  # noqa: F401
        with open(path, "rb") as f:
            return zstandard.ZstdDecompressor().decompressobj().decompress(f.read())
    except ImportError:
        pass
    zstd = shutil.which("zstd")
    if not zstd:
        raise AssertionError("neither python3-zstandard nor the zstd command "
                             "(deploy/install-deps.sh) is installed")
    return subprocess.run([zstd, "-dc", path], capture_output=True, check=True,
                          timeout=60).stdout


class Accounting(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.records = os.path.join(self.dir, "log", "records.jsonl")
        self.mx = TlsSink("127.0.0.1", mode="plain")  # refuses unknown*, defers busy*
        self.origin = harness.Sink(self.dir, "origin")  # where the DSNs go
        self.spate = None

    def tearDown(self):
        if self.spate:
            self.spate.stop()
        self.mx.stop()
        self.origin.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, delivery=None, log=None, routes=None, **kw):
        settings = {"records": self.records}
        settings.update(log or {})
        self.spate = harness.Spate(
            self.dir, routes or {"dest.test": self.mx.port, "origin.test": self.origin.port},
            log_deliveries=True, delivery=delivery, log=settings, **kw)
        self.spate.start()
        return self.spate

    def wait_records(self, predicate, what, timeout=30):
        """The records once predicate(records) holds."""
        found = []

        def check():
            recs = read_records(self.records)
            if predicate(recs):
                found.append(recs)
                return True
            return False
        harness.wait_for(check, timeout, what)
        return found[0]

    def track(self, *args):
        return subprocess.run([harness.SPATE, "track", *args, "--config", self.spate.config],
                              capture_output=True, text=True, timeout=60)

    @staticmethod
    def of(recs, type_, rcpt=None, id_=None):
        return [r for r in recs if r.get("type") == type_
                and (rcpt is None or r.get("recipient") == rcpt)
                and (id_ is None or r.get("id") == id_)]

    def test_records_say_what_happened_to_every_recipient(self):
        spate = self.start(delivery={"dsn": True, "retry_base": "500ms", "retry_max": "1s",
                                     "max_age": "3s"})
        ok, unknown, busy = "ok@dest.test", "unknown1@dest.test", "busy1@dest.test"
        qid, replies = submit(spate.smtp_port, [ok, unknown, busy], message("offer"))
        self.assertTrue(all(c == 250 for c, _ in replies.values()), replies)

        # Both DSNs (the refusal, the expiry) delivered, nothing left in the spool.
        harness.wait_for(lambda: len([1 for rs, _ in self.origin.transactions()
                                      if SENDER in rs]) == 2, 45, "two DSNs to the sender")
        harness.wait_for(lambda: spate.metric("spate_spool_messages") == 0, 30,
                         "an empty spool")
        recs = self.wait_records(
            lambda rs: self.of(rs, "Expiration", busy, qid)
            and sum(r.get("recipients", 0) for r in self.of(rs, "DSN")) >= 2,
            "the Expiration and the DSN records")
        written = spate.metric("spate_records_written_total")
        # Whatever was counted is in the file within the flush interval.
        recs = self.wait_records(lambda rs: len(rs) >= written, f"{written} records in the file")
        with open(self.records, "rb") as f:
            self.assertTrue(f.read().endswith(b"\n"), "the file ends with a whole line")
        everything = "\n".join(json.dumps(r) for r in recs)

        mine = [r for r in recs if r.get("id") == qid]
        receptions = self.of(mine, "Reception")
        self.assertEqual(sorted(r["recipient"] for r in receptions), sorted([ok, unknown, busy]),
                         everything)
        for r in receptions:
            self.assertEqual(r.get("sender"), SENDER, r)
            self.assertEqual(r.get("campaign"), "spring-sale", r)
            self.assertEqual(r.get("domain"), "dest.test", r)
            self.assertGreater(r.get("size", 0), 0, r)

        delivered = self.of(mine, "Delivery", ok)
        self.assertEqual(len(delivered), 1, everything)
        d = delivered[0]
        self.assertEqual(d.get("reply", {}).get("code"), 250, d)
        self.assertEqual(d.get("peer", {}).get("address"), f"127.0.0.1:{self.mx.port}", d)
        self.assertEqual(d.get("attempts"), 1, d)
        self.assertEqual(d.get("sender"), SENDER, d)

        bounced = self.of(mine, "Bounce", unknown)
        self.assertEqual(len(bounced), 1, everything)
        b = bounced[0]
        self.assertEqual(b.get("reply", {}).get("code"), 550, b)
        self.assertEqual(b.get("reply", {}).get("enhanced"), "5.1.1", b)
        self.assertIn("User unknown", b.get("reply", {}).get("text", ""), b)
        self.assertEqual(b.get("class"), "InvalidRecipient", b)
        self.assertEqual(b.get("peer", {}).get("address"), f"127.0.0.1:{self.mx.port}", b)

        busy_recs = [r for r in mine if r.get("recipient") == busy and r["type"] != "Reception"]
        transient = self.of(busy_recs, "TransientFailure")
        self.assertGreaterEqual(len(transient), 1, everything)
        for t in transient:
            self.assertEqual(t.get("reply", {}).get("code"), 451, t)
            self.assertEqual(t.get("reply", {}).get("enhanced"), "4.2.0", t)
            self.assertTrue(t.get("class"), f"a TransientFailure without a class: {t}")
        self.assertEqual([r["type"] for r in busy_recs],
                         ["TransientFailure"] * len(transient) + ["Expiration"],
                         "the busy recipient: deferred, then expired, nothing else")
        self.assertEqual(busy_recs[-1].get("class"), "MessageExpired", busy_recs[-1])
        self.assertEqual([t.get("attempts") for t in transient],
                         list(range(1, len(transient) + 1)), transient)

        dsns = self.of(recs, "DSN")
        self.assertTrue(dsns, everything)
        for r in dsns:
            self.assertEqual(r.get("action"), "failed", r)
            self.assertEqual(r.get("recipient"), SENDER, r)
            # The notice's own id links it to its own Reception and Delivery to the sender.
            own = [x for x in recs if x.get("id") == r.get("dsn_id")]
            self.assertIn("Reception", [x["type"] for x in own], r)
            self.assertEqual({x.get("sender") for x in own}, {""}, own)
        self.assertEqual(sum(r.get("recipients", 0) for r in dsns), 2, dsns)

        # Every record of the message names its campaign; time runs forward per recipient and
        # no event comes before the message was queued.
        for r in mine:
            self.assertEqual(r.get("campaign"), "spring-sale", r)
            self.assertIn("time", r, r)
            if "queued" in r:
                self.assertLessEqual(r["queued"], r["time"], r)
        for rcpt in (ok, unknown, busy):
            times = [r["time"] for r in mine if r.get("recipient") == rcpt]
            self.assertEqual(times, sorted(times), f"{rcpt}: {times}")

        # The log lines of the failures name the class.
        log = spate.read_log()
        self.assertRegex(log, r"(?m)rcpt=<unknown1@dest\.test>.* class=InvalidRecipient$")
        self.assertRegex(log, r"(?m)rcpt=<busy1@dest\.test>.* class=MessageExpired$")

        m = spate.metric
        self.assertEqual(m("spate_campaign_deliveries_total", campaign="spring-sale",
                           outcome="delivered"), 1)
        self.assertEqual(m("spate_campaign_deliveries_total", campaign="spring-sale",
                           outcome="failed"), 2)
        self.assertEqual(m("spate_bounces_total", domain="dest.test",
                           **{"class": "InvalidRecipient"}), 1)
        self.assertEqual(m("spate_bounces_total", domain="dest.test",
                           **{"class": "MessageExpired"}), 1)
        self.assertEqual(m("spate_expirations_total"), 1)
        self.assertEqual(m("spate_dsns_sent_total"), 2)
        self.assertGreaterEqual(m("spate_records_written_total"), len(recs))

    def test_a_suppressed_recipient_is_refused_at_rcpt_with_when_and_why(self):
        spate = self.start(sections={"suppression": {
            "enabled": True, "ttl": "90d", "classes": ["InvalidRecipient", "BadDomain"]}})
        first, _ = submit(spate.smtp_port, ["unknown@dest.test"], message("first"))
        self.wait_records(lambda rs: self.of(rs, "Bounce", "unknown@dest.test", first),
                          "the Bounce record")
        harness.wait_for(lambda: spate.metric("spate_suppression_entries") == 1, 10,
                         "the address on the suppression list")
        self.assertEqual(spate.metric("spate_suppressed_total"), 0)
        accepted_before = len(self.mx.rcpts())

        # Another transaction, the address in other case: refused at RCPT, the others taken.
        second, replies = submit(spate.smtp_port, ["Unknown@DEST.test", "ok2@dest.test"],
                                 message("second"))
        code, text = replies["Unknown@DEST.test"]
        text = text.decode()
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith("5.1.1 "), text)
        self.assertRegex(text, r"suppressed since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ")
        self.assertIn("InvalidRecipient", text)
        self.assertIn("550 5.1.1", text, "the reply that put it on the list")
        self.assertEqual(replies["ok2@dest.test"][0], 250, replies)
        harness.wait_for(lambda: "ok2@dest.test" in self.mx.rcpts(), 30, "ok2 delivered")

        recs = self.wait_records(lambda rs: self.of(rs, "Suppressed"), "a Suppressed record")
        suppressed = self.of(recs, "Suppressed")
        self.assertEqual(len(suppressed), 1, suppressed)
        s = suppressed[0]
        self.assertEqual(s.get("recipient", "").lower(), "unknown@dest.test", s)
        self.assertEqual(s.get("sender"), SENDER, s)
        self.assertEqual(s.get("class"), "InvalidRecipient", s)
        # Refused at RCPT, before the headers: no id and no campaign yet. "queued" is when the
        # address went on the list, at the bounce of the first message.
        self.assertNotIn("id", s)
        bounce = self.of(recs, "Bounce", "unknown@dest.test", first)[0]
        self.assertLessEqual(bounce["queued"], s["queued"], (bounce, s))
        self.assertLessEqual(s["queued"], s["time"], s)
        # Only the accepted recipient was received; the suppressed one never reached the MX.
        self.assertEqual([r["recipient"] for r in self.of(recs, "Reception", id_=second)],
                         ["ok2@dest.test"])
        self.assertEqual(len([r for r in self.mx.transactions if "unknown@dest.test" in r[0]]),
                         0)
        self.assertEqual(len(self.mx.rcpts()), accepted_before + 1)
        self.assertEqual(spate.metric("spate_suppressed_total"), 1)
        self.assertEqual(spate.metric("spate_suppression_entries"), 1)

        r = subprocess.run([harness.SPATE, "suppression", "export", "--config", spate.config],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = [l for l in r.stdout.splitlines() if l.startswith("unknown@dest.test,")]
        self.assertEqual(len(rows), 1, r.stdout)
        self.assertRegex(rows[0], r"^unknown@dest\.test,\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z,"
                                  r"InvalidRecipient,.*550 5\.1\.1")
        self.assertNotIn("Unknown@", r.stdout)

    def test_track_shows_each_recipient(self):
        spate = self.start(delivery={"retry_base": "1h", "retry_max": "1h"})
        ok, unknown, busy = "ok@dest.test", "unknown@dest.test", "busy@dest.test"
        qid, _ = submit(spate.smtp_port, [ok, unknown, busy], message("tracked"))
        self.wait_records(lambda rs: self.of(rs, "Delivery", ok, qid)
                          and self.of(rs, "Bounce", unknown, qid)
                          and self.of(rs, "TransientFailure", busy, qid),
                          "an outcome of each recipient")

        def check_text(r):
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = r.stdout.splitlines()
            self.assertRegex(lines[0], rf"^message {qid} from <{re.escape(SENDER)}> received "
                                       r"\S.* campaign spring-sale$")
            by = {l.split()[0]: l for l in lines[1:]}
            self.assertEqual(sorted(by), sorted([ok, unknown, busy]), r.stdout)
            self.assertRegex(by[ok], r"^  ok@dest\.test delivered attempts=1 ")
            self.assertRegex(by[unknown],
                             r"^  unknown@dest\.test bounced attempts=1 .*class=InvalidRecipient"
                             r".* reply=\"550 5\.1\.1 ")
            self.assertRegex(by[busy], r"^  busy@dest\.test deferred attempts=1 next=\"")
            self.assertIn('reply="451 4.2.0', by[busy])

        def check_json(r):
            self.assertEqual(r.returncode, 0, r.stderr)
            j = json.loads(r.stdout)
            self.assertEqual(j["id"], qid)
            self.assertEqual(j["sender"], SENDER)
            self.assertEqual(j.get("campaign"), "spring-sale")
            self.assertIs(j["in_spool"], True, "the deferred recipient keeps it in the spool")
            st = {x["recipient"]: x for x in j["recipients"]}
            self.assertEqual({k: v["status"] for k, v in st.items()},
                             {ok: "delivered", unknown: "bounced", busy: "deferred"})
            self.assertEqual(st[unknown].get("class"), "InvalidRecipient")
            self.assertEqual(st[unknown]["reply"]["code"], 550)
            self.assertEqual(st[ok]["attempts"], 1)
            # The next attempt is an hour out (retry_base, +-20% jitter).
            self.assertGreater(st[busy]["next_attempt"], time.time() * 1000 + 40 * 60 * 1000)
            self.assertTrue(all(x["events"] for x in j["recipients"]), j)

        check_text(self.track(qid))
        check_json(self.track(qid, "--json"))
        check_text(self.track(qid.upper()))  # as the 250 reply may print it
        r = self.track("0123456789abcdef")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("no message 0123456789abcdef", r.stderr)

        self.assertEqual(spate.stop(), 0)
        check_text(self.track(qid))
        check_json(self.track(qid, "--json"))
        # Lines of another shape (a hand-edited or damaged file) are skipped, not fatal.
        with open(self.records, "a") as f:
            f.write('{"type":"Delivery","id":"%s","recipient":5,"attempts":"x"}\n' % qid)
            f.write('{"type":"Bounce","id":"%s","recipient":["zz@dest.test"],"reply":"x",'
                    '"class":7}\nnot json at all "id":"%s"\n' % (qid, qid))
            f.write('{"type":"Delivery","id":7,"x":{"id":"%s"},"recipient":"zz@dest.test"}\n' % qid)
        check_text(self.track(qid))
        check_json(self.track(qid, "--json"))

    def test_records_survive_kill_9(self):
        sink = harness.Sink(self.dir, "dest")
        try:
            self._records_survive_kill_9(sink)
        finally:
            sink.stop()

    def _records_survive_kill_9(self, sink):
        # kill -9 under load: messages go in and out while spate dies. What was accepted, or
        # delivered, more than the writer's flush interval (1 s) before the kill is recorded,
        # and the file ends with a whole line.
        spate = self.start(routes={"dest.test": sink.port})
        accepted = []  # (monotonic time of the 250, queue id, recipient)
        stop = threading.Event()

        def load():
            try:
                with smtplib.SMTP("127.0.0.1", spate.smtp_port, timeout=10) as smtp:
                    smtp.ehlo("client.test")
                    for i in range(100000):
                        if stop.is_set():
                            return
                        rcpt = f"user{i}@dest.test"
                        qid, _ = submit(spate.smtp_port, [rcpt], message(str(i)), smtp=smtp)
                        accepted.append((time.monotonic(), qid, rcpt))
            except (OSError, smtplib.SMTPException, AssertionError):
                return  # the kill ends the load

        thread = threading.Thread(target=load)
        thread.start()
        try:
            harness.wait_for(lambda: len(sink.transactions()) >= 100, 60, "100 at the sink")
            # What the sink has by now was delivered (and recorded) before this moment...
            delivered = {r for rs, _ in sink.transactions() for r in rs}
            accepted_by = len(accepted)
            # ... and must be on disk 1 s later at the latest: kill after a margin, loaded still.
            time.sleep(1.5)
            self.assertTrue(thread.is_alive(), "the load still runs at the kill")
            spate.kill9()
        finally:
            stop.set()
            thread.join(30)

        with open(self.records, "rb") as f:
            data = f.read()
        self.assertTrue(data.endswith(b"\n"), f"a torn last line: {data[-200:]!r}")
        recs = parse_lines(data, self.records)
        received = {r["id"] for r in self.of(recs, "Reception")}
        missing = [q for _, q, _ in accepted[:accepted_by] if q not in received]
        self.assertEqual(missing, [], f"{len(missing)} of {accepted_by} without a Reception")
        recorded = {r["recipient"] for r in self.of(recs, "Delivery")}
        missing = sorted(delivered - recorded)
        self.assertEqual(missing, [], f"{len(missing)} of {len(delivered)} without a Delivery")

        # A restart on the same spool appends to the same file: the old records stay.
        spate.start()
        qid, _ = submit(spate.smtp_port, ["after@dest.test"], message("after"))
        after = self.wait_records(lambda rs: self.of(rs, "Delivery", "after@dest.test", qid),
                                  "the new message's Delivery record")
        self.assertEqual(after[:len(recs)], recs, "the old records stay, the new ones follow")
        self.assertTrue(self.of(after[len(recs):], "Reception", "after@dest.test", qid))

    def test_sighup_reopens_the_records_file(self):
        spate = self.start()
        first, _ = submit(spate.smtp_port, ["ok1@dest.test"], message("before"))
        self.wait_records(lambda rs: self.of(rs, "Delivery", "ok1@dest.test", first),
                          "the first message's Delivery record")
        # logrotate's way: rename the live file, then SIGHUP.
        moved = self.records + ".1"
        os.rename(self.records, moved)
        spate.proc.send_signal(signal.SIGHUP)
        second, _ = submit(spate.smtp_port, ["ok2@dest.test"], message("after"))
        recs = self.wait_records(lambda rs: self.of(rs, "Delivery", "ok2@dest.test", second),
                                 "the second message's Delivery record in a new live file")
        self.assertEqual({r["id"] for r in recs}, {second}, recs)
        old = read_records(moved)
        self.assertEqual({r["id"] for r in old}, {first}, old)
        self.assertIsNone(spate.proc.poll(), "spate runs on after SIGHUP")

    def test_records_rotate_and_compress(self):
        sink = harness.Sink(self.dir, "dest")
        try:
            self._records_rotate_and_compress(sink)
        finally:
            sink.stop()

    def _records_rotate_and_compress(self, sink):
        count, max_size, keep = 150, 20 * 1024, 3
        spate = self.start(routes={"dest.test": sink.port},
                           log={"records_max_size": "20KB", "records_keep": keep,
                                "records_compress": True})
        ids = []
        with smtplib.SMTP("127.0.0.1", spate.smtp_port, timeout=30) as smtp:
            smtp.ehlo("client.test")
            for i in range(count):
                qid, _ = submit(spate.smtp_port, [f"user{i}@dest.test"], message(str(i)),
                                smtp=smtp)
                ids.append(qid)
        harness.wait_for(lambda: len(sink.transactions()) >= count, 60, f"{count} at the sink")
        harness.wait_for(lambda: spate.metric("spate_spool_messages") == 0, 30,
                         "an empty spool")
        # A Reception and a Delivery per message, written within the flush interval.
        written = harness.wait_for(
            lambda: (lambda n: n if n >= 2 * count else None)(
                spate.metric("spate_records_written_total")), 10, f"{2 * count} records written")
        self.assertEqual(spate.stop(), 0)

        logdir = os.path.dirname(self.records)
        names = sorted(os.listdir(logdir))
        rotated = [n for n in names if n != "records.jsonl"]
        self.assertTrue(all(ROTATED.match(n) for n in rotated),
                        f"rotated files named records.jsonl.YYYYMMDDTHHMMSS[.N].zst: {names}")
        # 150 messages make far more than (keep + 1) x 20 KB of records: the oldest went.
        self.assertEqual(len(rotated), keep, names)

        total = 0
        kept = []
        for n in rotated + ["records.jsonl"]:
            path = os.path.join(logdir, n)
            if n.endswith(".zst"):
                data = decompress(path)
            else:
                with open(path, "rb") as f:
                    data = f.read()
            self.assertTrue(data.endswith(b"\n"), f"{n} ends with a torn line")
            self.assertLessEqual(len(data), max_size, f"{n}: past records_max_size")
            lines = parse_lines(data, n)
            self.assertTrue(lines, f"{n} is empty")
            total += len(lines)
            kept.extend(lines)
        self.assertLess(total, written, "the oldest rotated files were removed")
        # The newest records are kept, the oldest went: the last message's Delivery is there,
        # the first message's Reception is not.
        self.assertTrue(self.of(kept, "Delivery", f"user{count - 1}@dest.test", ids[-1]))
        self.assertFalse(self.of(kept, "Reception", "user0@dest.test", ids[0]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
