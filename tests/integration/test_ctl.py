"""`spate ctl` steering the real daemon (issue 13): a suspension holds mail, survives a restart
and a resume releases it; a suspension with a duration ends by itself; the queue by domain and by
campaign counts what waits; an operator's bounce of a campaign fails its queued mail with
AdminBounce records and DSNs to the sender; `ctl message` gives each recipient's status; the
suppression list is listed, exported and imported over the API; `ctl top` shows rates.
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

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from test_dkim import MessageSink  # noqa: E402  (defers its first transactions)


def message(subject, campaign=None):
    headers = f"From: s@src.test\r\nSubject: {subject}\r\n"
    if campaign:
        headers += f"X-Campaign: {campaign}\r\n"
    return (headers + "\r\nhello\r\n").encode()


class Ctl(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.dest = MessageSink()
        self.later = MessageSink(defer_first=1000)  # defers everything
        self.bounces = MessageSink()  # the sender's domain: DSNs arrive here
        self.spate = None

    def tearDown(self):
        if self.spate:
            self.spate.stop()
        for s in (self.dest, self.later, self.bounces):
            s.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, **kwargs):
        if self.spate is None:
            self.spate = harness.Spate(
                self.dir, {"dest.test": self.dest.port, "later.test": self.later.port,
                           "src.test": self.bounces.port},
                delivery={"retry_base": "1h", "retry_max": "1h"},
                server={"campaign_header": "X-Campaign"}, **kwargs)
        ready = self.spate.start()
        self.address = ready.split(" admin=")[1].split()[0]

    def ctl(self, *args, check=True):
        out = subprocess.run([harness.SPATE, "ctl", "--config", self.spate.config, "--admin",
                              self.address, *args], capture_output=True, text=True, timeout=60)
        if check:
            self.assertEqual(out.returncode, 0, f"ctl {args}: {out.stdout}{out.stderr}")
        return out

    def ctl_json(self, *args):
        return json.loads(self.ctl("--json", *args).stdout)

    def send(self, rcpts, data):
        """One message; its queue id (from "250 ... queued as ID")."""
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as c:
            c.ehlo("client.test")
            c.mail("s@src.test")
            for r in rcpts:
                self.assertEqual(c.rcpt(r)[0], 250)
            code, text = c.data(data)
            self.assertEqual(code, 250)
            return text.decode().split("queued as ")[1].split()[0]

    def row(self, by, name):
        rows = self.ctl_json("queue", "--by", by)["rows"]
        found = [r for r in rows if r["name"] == name]
        return found[0] if found else None

    def test_suspend_holds_mail_across_a_restart_and_resume_releases_it(self):
        self.start()
        out = self.ctl("suspend", "--domain", "Dest.Test", "--reason", "their maintenance")
        self.assertIn("dest.test", out.stdout)
        self.assertIn("until resumed", out.stdout)
        for i in range(3):
            self.send([f"u{i}@dest.test"], message(f"held {i}"))
        harness.wait_for(lambda: (self.row("domain", "dest.test") or {}).get("queued") == 3, 20,
                         "three queued")
        time.sleep(1.5)
        self.assertEqual(len(self.dest.messages), 0, "a suspended domain gets nothing")
        row = self.row("domain", "dest.test")
        self.assertTrue(row["suspended"])
        self.assertEqual(row["in_flight"], 0)
        table = self.ctl("queue").stdout
        line = [l for l in table.splitlines() if l.startswith("dest.test")][0]
        self.assertIn("yes", line)
        listed = self.ctl_json("suspensions")["suspensions"]
        self.assertEqual([(s["scope"], s["name"], s["reason"], s["until"]) for s in listed],
                         [("domain", "dest.test", "their maintenance", None)])
        self.assertEqual(self.spate.metric("spate_admin_controls", action="suspend",
                                           scope="domain"), 1)

        # A restart: the suspension is kept in the spool, and the recovered mail stays held.
        self.assertEqual(self.spate.stop(), 0)
        self.start()
        self.assertEqual(len(self.ctl_json("suspensions")["suspensions"]), 1)
        time.sleep(1.5)
        self.assertEqual(len(self.dest.messages), 0, "still held after the restart")

        self.ctl("resume", "--domain", "dest.test")
        harness.wait_for(lambda: len(self.dest.messages) == 3, 20, "released at once")
        harness.wait_for(lambda: (self.row("domain", "dest.test") or {}).get("queued") == 0, 20,
                         "none queued")
        self.assertEqual(self.ctl_json("suspensions")["suspensions"], [])
        out = self.ctl("resume", "--domain", "dest.test", check=False)
        self.assertEqual(out.returncode, 1)
        self.assertIn("not suspended", out.stderr)
        # Bad input: a usage error, or the API's 400 naming the field.
        self.assertEqual(self.ctl("suspend", check=False).returncode, 2)
        out = self.ctl("suspend", "--campaign", "x", "--duration", "soon", check=False)
        self.assertEqual(out.returncode, 1)
        self.assertIn("duration", out.stderr)

    def test_a_campaign_suspended_for_a_while_goes_by_itself_after(self):
        self.start()
        self.ctl("suspend", "--campaign", "spring", "--duration", "3s")
        self.send(["a@dest.test"], message("spring 1", campaign="spring"))
        self.send(["b@dest.test"], message("no campaign"))
        harness.wait_for(lambda: len(self.dest.messages) == 1, 20, "the other one delivered")
        self.assertIn(b"no campaign", self.dest.messages[0][1])
        row = self.row("campaign", "spring")
        self.assertEqual(row["queued"], 1)
        self.assertTrue(row["suspended"])
        harness.wait_for(lambda: len(self.dest.messages) == 2, 20, "delivered when it ended")

    def test_a_campaign_bounce_fails_its_queued_mail_with_records_and_dsns(self):
        self.start()
        ids = [self.send([f"r{i}@later.test"], message(f"oops {i}", campaign="spam-run"))
               for i in range(2)]
        keep = self.send(["k@later.test"], message("keep", campaign="newsletter"))
        harness.wait_for(lambda: len(self.later.messages) == 3, 20, "all three deferred")
        harness.wait_for(lambda: (self.row("campaign", "spam-run") or {}).get("queued") == 2, 20,
                         "the campaign's two queued")
        out = self.ctl("bounce", "--campaign", "spam-run", "--reason", "sent by mistake")
        self.assertIn("2", out.stdout)
        # Each sender gets a DSN saying why.
        harness.wait_for(lambda: len(self.bounces.messages) == 2, 20, "two DSNs")
        for rcpts, data in self.bounces.messages:
            self.assertEqual(rcpts, ["s@src.test"])
            self.assertIn(b"Action: failed", data)
            self.assertIn(b"administrative bounce: sent by mistake", data)
        def admin_bounces():
            with open(self.spate.records_path) as f:
                return [r for r in map(json.loads, f) if r["type"] == "AdminBounce"]
        harness.wait_for(lambda: len(admin_bounces()) == 2, 20, "two AdminBounce records")
        admin = admin_bounces()
        self.assertEqual(sorted(r["recipient"] for r in admin), ["r0@later.test", "r1@later.test"])
        self.assertTrue(all(r["campaign"] == "spam-run" for r in admin))
        self.assertEqual(self.row("campaign", "spam-run")["queued"], 0)
        self.assertEqual(self.row("campaign", "newsletter")["queued"], 1)
        # Nobody went on the suppression list for it.
        self.assertEqual(self.ctl_json("suppression", "list")["count"], 0)

        # ctl message: bounced, with the operator's reply; the other still deferred.
        status = self.ctl_json("message", ids[0])
        self.assertEqual(status["recipients"][0]["address"], "r0@later.test")
        self.assertEqual(status["recipients"][0]["status"], "bounced")
        self.assertIn("sent by mistake", status["recipients"][0]["reply"])
        kept = self.ctl_json("message", keep)
        self.assertEqual(kept["recipients"][0]["status"], "deferred")
        self.assertIn("next_attempt", kept["recipients"][0])
        table = self.ctl("message", keep).stdout
        self.assertIn("k@later.test", table)
        self.assertIn("deferred", table)
        out = self.ctl("message", "00000000000000ff", check=False)
        self.assertEqual(out.returncode, 1)

    def test_message_status_of_a_delivered_and_a_deferred_recipient(self):
        self.start()
        mid = self.send(["ok@dest.test", "wait@later.test"], message("two"))
        harness.wait_for(lambda: len(self.dest.messages) == 1 and len(self.later.messages) == 1,
                         20, "one delivered, one deferred")
        harness.wait_for(
            lambda: {r["address"]: r["status"] for r in
                     self.ctl_json("message", mid)["recipients"]} ==
            {"ok@dest.test": "delivered", "wait@later.test": "deferred"}, 20, "both statuses")
        status = self.ctl_json("message", mid)
        self.assertEqual(status["sender"], "s@src.test")
        by = {r["address"]: r for r in status["recipients"]}
        self.assertTrue(by["ok@dest.test"]["reply"].startswith("250"))
        self.assertEqual(by["wait@later.test"]["attempts"], 1)

    def test_suppression_list_export_and_import(self):
        self.start()
        self.ctl("suppression", "add", "a@dest.test", "--reason", "asked")
        self.ctl("suppression", "add", "b@dest.test")
        listed = self.ctl_json("suppression", "list")
        self.assertEqual(listed["count"], 2)
        self.assertEqual(sorted(e["address"] for e in listed["entries"]),
                         ["a@dest.test", "b@dest.test"])
        self.assertEqual(len(self.ctl_json("suppression", "list", "--limit", "1")["entries"]), 1)
        table = self.ctl("suppression", "list").stdout
        self.assertIn("a@dest.test", table)
        path = os.path.join(self.dir, "list.csv")
        self.ctl("suppression", "export", path)
        with open(path) as f:
            csv = f.read()
        self.assertIn("a@dest.test", csv)
        self.assertIn("asked", csv)
        for a in ("a@dest.test", "b@dest.test"):
            self.ctl("suppression", "remove", a)
        self.assertEqual(self.ctl_json("suppression", "list")["count"], 0)
        out = self.ctl("suppression", "import", path)
        self.assertIn("imported 2", out.stdout)
        self.assertEqual(self.ctl_json("suppression", "list")["count"], 2)
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as c:
            c.ehlo("client.test")
            c.mail("s@src.test")
            self.assertEqual(c.rcpt("a@dest.test")[0], 550, "imported: refused at RCPT")
        bad = os.path.join(self.dir, "bad.csv")
        with open(bad, "w") as f:
            f.write(csv.splitlines()[0] + "\nnot an address,2026-01-01T00:00:00Z,Manual,x\n")
        out = self.ctl("suppression", "import", bad, check=False)
        self.assertEqual(out.returncode, 1)
        self.assertIn("line 2", out.stderr)

    def test_top_shows_the_rates_per_domain(self):
        self.start()
        proc = subprocess.Popen([harness.SPATE, "ctl", "--config", self.spate.config, "--admin",
                                 self.address, "--json", "top", "--interval", "1", "--count",
                                 "3"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)  # its first poll, the baseline, is behind us
        for i in range(20):  # over about two of its intervals
            self.send([f"t{i}@dest.test"], message(f"top {i}"))
            time.sleep(0.1)
        out, _ = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 0)
        tables = [json.loads(line) for line in out.splitlines() if line.strip()]
        self.assertEqual(len(tables), 3)
        rates = [r["delivered_per_s"] for t in tables for r in t["rows"] if r["name"] == "dest.test"]
        self.assertTrue(rates and max(rates) > 0, tables)
        # 20 delivered in all: the rates times the intervals add up to that.
        total = sum(r["delivered_per_s"] * t["interval_seconds"]
                    for t in tables for r in t["rows"] if r["name"] == "dest.test")
        self.assertLessEqual(round(total), 20)


if __name__ == "__main__":
    unittest.main()
