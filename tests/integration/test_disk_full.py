"""A full disk, for real: spate's spool is a small tmpfs in a mount namespace of its own
(harness tmpfs_mb, unshare), so the free space statvfs reports is the space RocksDB has.

What a user checks ([spool] min_free_space, queue/spool.h "Health"): once the spool's own mail
takes the file system to the watermark, new mail is refused with 452 4.3.1 at MAIL, spate stays
up, the log says so once (not once per message), and the spool_state metric shows it; the
deliveries go on and free the space, and spate accepts again by itself; every message answered
250 is delivered. The same when something else fills the disk and then lets go of it.
"""
import base64
import os
import re
import shutil
import smtplib
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import crashkit  # noqa: E402
import harness  # noqa: E402

TMPFS_MB = 96
MIN_FREE = "16MB"
MESSAGE_KB = 200
MAX_MESSAGES = TMPFS_MB * 1024 // MESSAGE_KB + 50  # more than fit: the watermark must stop it
IN_A_ROW = 30


def incompressible(seq, size):
    """Message `seq` with `size` octets of random base64: RocksDB compresses its table files,
    and a body of repeated lines would fill no disk."""
    raw = base64.b64encode(os.urandom(size * 3 // 4)).decode()
    lines = "\r\n".join(raw[i:i + 76] for i in range(0, len(raw), 76))
    return f"Subject: {seq}\r\nX-Seq: {seq}\r\n\r\n{lines}\r\n".encode()


class DiskFull(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.sink = crashkit.HookSink()
        self.spate = None

    def tearDown(self):
        if self.spate and self.spate.proc and self.spate.proc.poll() is None:
            self.spate.kill9()
        self.sink.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self):
        self.spate = harness.Spate(self.dir, {"dest.test": self.sink.port}, shards=2,
                                   spool={"min_free_space": MIN_FREE}, tmpfs_mb=TMPFS_MB,
                                   delivery={"retry_base": "300ms", "retry_max": "1s"})
        self.spate.start()

    def mail_reply(self):
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
            smtp.ehlo("client.test")
            return smtp.mail("sender@campaign.test")

    def state(self):
        """spate_spool_state from one scrape (four would each see the state of their moment)."""
        text = self.spate.metrics()
        out = {}
        for s in ("ok", "low_space", "failed", "stalled"):
            m = re.search(r'^spate_spool_state\{state="%s"\} (\S+)$' % s, text, re.M)
            out[s] = float(m.group(1)) if m else None
        return out

    def test_own_mail_fills_the_disk_then_deliveries_free_it(self):
        self.sink.refuse = True  # nothing leaves: the queue grows until the watermark
        self.start()
        # Until MAIL has been refused IN_A_ROW times running: near the mark the state may go
        # back and forth as RocksDB flushes and drops a write-ahead log (space really comes
        # back), but with nothing delivered the disk does fill.
        acked, refusals, in_a_row = set(), [], 0
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
            smtp.ehlo("client.test")
            for seq in range(2 * MAX_MESSAGES):
                code, text = smtp.mail("sender@campaign.test")
                if code != 250:
                    refusals.append((code, text))
                    in_a_row += 1
                    if in_a_row >= IN_A_ROW:
                        break
                    time.sleep(0.02)
                    continue
                in_a_row = 0
                self.assertEqual(smtp.rcpt(f"user{seq}@dest.test")[0], 250)
                code, text = smtp.data(incompressible(seq, MESSAGE_KB * 1024))
                if code == 250:
                    acked.add(seq)
                else:  # refused at its commit: it would have crossed the mark
                    refusals.append((code, text))
        print(f"disk_full: acked={len(acked)} refusals={len(refusals)} first={refusals[:1]}",
              flush=True)
        self.assertEqual(in_a_row, IN_A_ROW, "the disk never filled")
        for code, text in refusals:
            self.assertEqual(code, 452, text)
            self.assertTrue(text.startswith(b"4.3.1 "), text)
        # RocksDB reserves its write-ahead log ahead (fallocate), so some 30 MB of the tmpfs
        # go at once; what is left over the mark takes a hundred messages or more.
        self.assertGreater(len(acked), 100, "refused long before the disk was full")
        self.assertIsNone(self.spate.proc.poll(), "spate died on a full disk")
        # The metric says so (RocksDB may free some space any moment, as a flush drops a log:
        # then it says ok again, never anything else).
        state = self.state()
        self.assertEqual(sum(state.values()), 1, state)
        self.assertIn(1, (state["low_space"], state["ok"]), state)
        self.spate.wait_for_log(r"spool: refusing new mail \(452 4\.3\.1")
        self.assertGreater(self.spate.metric("spate_spool_free_bytes"), 0)

        # The destination takes mail again: deliveries free the space, and spate accepts again
        # by itself, without a restart.
        self.sink.refuse = False
        harness.wait_for(lambda: self.mail_reply()[0] == 250, 60, "a 250 to MAIL again")
        crashkit.wait_until_delivered(self.spate, self.sink, acked, 60)
        self.assertEqual(self.state()["ok"], 1)
        log = self.spate.wait_for_log(r"spool: accepting new mail again")
        # Said as the state changes, not once per refusal (there were 30 and more). It may
        # change more than once: the flush that frees the space opens a new write-ahead log,
        # which RocksDB reserves ahead (fallocate), for a moment under the mark again.
        said = log.count("spool: refusing new mail (452 4.3.1")
        self.assertGreaterEqual(said, 1)
        self.assertLessEqual(said, max(3, len(refusals) // 10),
                             f"said once per change of state, not once per refusal ({said} "
                             f"lines for {len(refusals)} refusals)")
        self.assertNotIn("Assertion", log)

    def test_something_else_fills_the_disk_and_lets_go(self):
        self.start()
        self.assertEqual(self.mail_reply()[0], 250)
        filler = os.path.join(self.spate.spool_outside(), "filler")
        with open(filler, "wb") as f:
            # Leaves less than the 16 MB mark, whatever the spool took already.
            free = int(self.spate.metric("spate_spool_free_bytes"))
            f.write(b"\0" * (free - (8 << 20)))
        harness.wait_for(lambda: self.mail_reply()[0] == 452, 10, "452 at MAIL")
        code, text = self.mail_reply()
        self.assertTrue(text.startswith(b"4.3.1 "), text)
        self.assertEqual(self.state()["low_space"], 1)
        os.unlink(filler)
        harness.wait_for(lambda: self.mail_reply()[0] == 250, 10, "250 at MAIL again")
        # And mail goes through end to end.
        with smtplib.SMTP("127.0.0.1", self.spate.smtp_port, timeout=30) as smtp:
            self.assertEqual(smtp.sendmail("s@campaign.test", ["u1@dest.test"],
                                           crashkit.message(1)), {})
        harness.wait_for(lambda: 1 in self.sink.delivered_set(), 30, "the delivery")
        self.assertIsNone(self.spate.proc.poll())


if __name__ == "__main__":
    unittest.main(verbosity=2)
