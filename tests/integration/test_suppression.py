"""`spate suppression export|import|remove` on a real spool: an import is read back by export
and by a starting spate; while spate runs, export still works and import and remove are refused
with the message that says to stop it; a bad CSV line is named and imports nothing.
Temporary directories and loopback only; every wait has a deadline.
"""
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

CSV = (
    "address,since,class,reason\r\n"
    "Bob@Example.COM,2026-01-02T03:04:05Z,InvalidRecipient,"
    "\"550 5.1.1 <bob@example.com>: no such user, sorry\"\r\n"
    "carol@example.com\r\n"
)


class SuppressionCommands(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.spate = harness.Spate(self.dir, {}, shards=1,
                                   sections={"suppression": {"ttl": "0s"}})  # nothing expires
        self.csv = os.path.join(self.dir, "list.csv")
        with open(self.csv, "w", newline="") as f:
            f.write(CSV)

    def tearDown(self):
        self.spate.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def run_spate(self, *args, stdin=None):
        """The command's exit status, stdout and stderr (bytes decoded as they are: the CSV's
        CRLF stays)."""
        r = subprocess.run([harness.SPATE, "suppression", *args, "--config", self.spate.config],
                           capture_output=True, input=stdin.encode() if stdin else None,
                           timeout=60)
        r.stdout, r.stderr = r.stdout.decode(), r.stderr.decode()
        return r

    def test_import_export_remove_and_a_running_spate(self):
        r = self.run_spate("import", self.csv)
        self.assertEqual((r.returncode, r.stdout), (0, "imported 2 entries\n"), r.stderr)

        r = self.run_spate("export")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.split("\r\n")
        self.assertEqual(lines[0], "address,since,class,reason")
        self.assertEqual(lines[1], "bob@example.com,2026-01-02T03:04:05Z,InvalidRecipient,"
                                   "\"550 5.1.1 <bob@example.com>: no such user, sorry\"")
        self.assertTrue(lines[2].startswith("carol@example.com,") and
                        lines[2].endswith(",Manual,"), lines[2])

        self.spate.start()  # loads the list and holds the spool
        self.spate.wait_for_log(r"suppression list: 2 entries")
        r = self.run_spate("export")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("bob@example.com,", r.stdout)
        busy = (f"the spool at {self.spate.spool} is in use by a running spate; stop it first "
                "(the admin API will import live)")
        r = self.run_spate("import", "-", stdin="dave@example.com\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn(busy, r.stderr)
        r = self.run_spate("remove", "bob@example.com")
        self.assertEqual(r.returncode, 1)
        self.assertIn(busy, r.stderr)
        self.assertEqual(self.spate.stop(), 0)

        r = self.run_spate("remove", "BOB@example.com")
        self.assertEqual((r.returncode, r.stdout), (0, "removed bob@example.com\n"), r.stderr)
        r = self.run_spate("remove", "bob@example.com")
        self.assertEqual(r.returncode, 1)
        self.assertIn("not on the suppression list", r.stdout)
        r = self.run_spate("export")
        self.assertNotIn("bob@", r.stdout)
        self.assertIn("carol@example.com,", r.stdout)

    def test_a_bad_line_is_named_and_nothing_is_imported(self):
        r = self.run_spate("import", "-", stdin="a@example.com\nnot an address\nb@example.com\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("line 2: address:", r.stderr)
        self.assertIn("nothing imported", r.stderr)
        r = self.run_spate("export")
        self.assertEqual((r.returncode, r.stdout), (1, ""), "no spool was made")
        self.assertIn("no spool at", r.stderr)

    def test_usage_errors_exit_2(self):
        for args in (["list"], ["import"], ["remove"], ["export", "extra"], ["import", "--x"]):
            r = subprocess.run([harness.SPATE, "suppression", *args], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn("usage: spate suppression", r.stderr)


if __name__ == "__main__":
    unittest.main()
