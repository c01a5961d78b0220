"""Bounces end to end, with [delivery] dsn = true: a recipient refused with 550 5.1.1 and one
that expires (max_age) come back to their sender as RFC 3464 DSNs, delivered like any mail to
the sender's domain (a static route to an smtp-sink), and an independent bounce parser
(Sisimai, Debian's libsisimai-perl) files them as userunknown and expired. A message from the
null sender is never bounced, and nothing is left in the spool.
"""
import os
import shutil
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from tls_sink import TlsSink  # noqa: E402

SISIMAI = os.path.join(os.path.dirname(__file__), "..", "dsn", "sisimai_reason.pl")


class Dsn(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.mx = TlsSink("127.0.0.1", mode="plain")  # refuses unknown*, defers busy*
        self.origin = harness.Sink(self.dir, "origin")  # where the bounces go
        self.spate = harness.Spate(
            self.dir, {"dest.test": self.mx.port, "origin.test": self.origin.port},
            log_deliveries=True,
            delivery={"dsn": True, "max_age": "2s", "retry_base": "500ms", "retry_max": "1s"})
        self.spate.start()

    def tearDown(self):
        self.spate.stop()
        self.mx.stop()
        self.origin.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def sisimai(self, text):
        path = os.path.join(self.dir, "bounce.eml")
        with open(path, "w") as f:
            f.write(text)
        return subprocess.run(["/usr/bin/perl", SISIMAI, path], capture_output=True,
                              text=True, timeout=60).stdout

    def test_refused_and_expired_recipients_come_back_to_the_sender(self):
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
            smtp.sendmail("news@origin.test", ["unknown1@dest.test", "ok@dest.test"],
                          "Subject: offer\r\nMessage-ID: <m1@origin.test>\r\n\r\nhi\r\n")
            smtp.sendmail("news@origin.test", ["busy1@dest.test"],
                          "Subject: later\r\n\r\nhi\r\n")
            # A bounce itself (the null sender) is never bounced.
            smtp.sendmail("", ["unknown2@dest.test"], "Subject: a bounce\r\n\r\nhi\r\n")
        harness.wait_for(lambda: "ok@dest.test" in self.mx.rcpts(), 30, "the good recipient")
        refused = self.origin.wait_for_rcpt("news@origin.test")
        self.assertIn("Content-Type: multipart/report; report-type=delivery-status", refused)
        self.assertIn("Final-Recipient: rfc822; unknown1@dest.test", refused)
        self.assertIn("Status: 5.1.1", refused)
        self.assertIn("Subject: offer", refused)  # the original's headers came back
        self.assertEqual(self.sisimai(refused).split()[:3],
                         ["userunknown", "5.1.1", "unknown1@dest.test"])
        # The deferred one expires after max_age (2 s) and is bounced too.
        def two_bounces():
            texts = [t for rs, t in self.origin.transactions() if "news@origin.test" in rs]
            return texts if len(texts) == 2 else None
        texts = harness.wait_for(two_bounces, 30, "the expiry's DSN")
        expired = next(t for t in texts if "busy1@dest.test" in t)
        self.assertIn("Status: 4.4.7", expired)
        self.assertIn("Diagnostic-Code: smtp; 451 4.2.0 mailbox busy", expired)
        self.assertEqual(self.sisimai(expired).split()[:1], ["expired"])
        self.spate.wait_for_log(r"expired .*rcpt=<busy1@dest\.test>")
        harness.wait_for(lambda: self.spate.metric("spate_spool_messages") == 0, 30,
                         "an empty spool")
        self.assertEqual(len([1 for rs, _ in self.origin.transactions()
                              if "news@origin.test" in rs]), 2)
        self.assertNotRegex(self.spate.read_log(), r"dsn id=\S+ to=<>")
        self.assertEqual(self.spate.metric("spate_dsns_sent_total"), 2)

    def test_notify_success_ret_full_envid_and_orcpt_come_back_in_a_relayed_notice(self):
        # dest.test's server offers no DSN: spate reports the success itself ("relayed").
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
            smtp.ehlo("client.test")
            self.assertTrue(smtp.has_extn("dsn"))
            smtp.sendmail("news@origin.test", ["ok2@dest.test"],
                          "Subject: full\r\n\r\nthe whole body comes back\r\n",
                          mail_options=["RET=FULL", "ENVID=QQ+2B123"],
                          rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;Ok2+2BX@dest.test"])
        notice = self.origin.wait_for_rcpt("news@origin.test")
        self.assertIn("Action: relayed", notice)
        self.assertIn("Status: 2.", notice)
        self.assertIn("Original-Envelope-Id: QQ+2B123", notice)  # xtext, as it came
        self.assertIn("Original-Recipient: rfc822;Ok2+X@dest.test", notice)
        self.assertIn("Content-Type: message/rfc822", notice)  # RET=FULL: the whole of it
        self.assertIn("the whole body comes back", notice)
        self.assertIn("ok2@dest.test", self.mx.rcpts())
        harness.wait_for(lambda: self.spate.metric("spate_spool_messages") == 0, 30,
                         "an empty spool")

    def test_a_dsn_its_senders_server_refuses_is_dropped_and_counted(self):
        # The sender's own address is refused (unknown*): its DSN fails, and is never bounced.
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
            smtp.sendmail("unknownsender@dest.test", ["unknown3@dest.test"],
                          "Subject: doomed\r\n\r\nhi\r\n")
        self.spate.wait_for_log(r"failed .*rcpt=<unknown3@dest\.test>")
        self.spate.wait_for_log(r"failed .*rcpt=<unknownsender@dest\.test>.*550 5\.1\.1")
        harness.wait_for(lambda: self.spate.metric("spate_dsns_failed_total") == 1, 30,
                         "the failed DSN counted")
        harness.wait_for(lambda: self.spate.metric("spate_spool_messages") == 0, 30,
                         "an empty spool")
        self.assertEqual(self.spate.metric("spate_dsns_sent_total"), 1)
        self.assertNotRegex(self.spate.read_log(), r"dsn id=\S+ to=<>")


if __name__ == "__main__":
    unittest.main(verbosity=2)
