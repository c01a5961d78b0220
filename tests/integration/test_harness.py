"""The harness's own promises about ports, which every other integration test leans on: a sink
whose candidate port was taken by someone else starts on another one, a server that fails for
another reason fails the test, and a ClosedPort refuses connections and cannot be taken.
"""
import errno
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


class PortTest(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.candidate = harness._candidate_port

    def tearDown(self):
        harness._candidate_port = self.candidate
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_sink_whose_port_was_taken_starts_on_another(self):
        # Another process's listener sits on the first port the harness will pick.
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        picks = [taken.getsockname()[1]]
        harness._candidate_port = lambda: picks.pop(0) if picks else self.candidate()
        sink = harness.Sink(self.dir, "dest")
        try:
            self.assertNotEqual(sink.port, taken.getsockname()[1])
            self.assertTrue(harness.listens_on(sink.proc.pid, sink.port))
            self.assertFalse(harness.listens_on(sink.proc.pid, taken.getsockname()[1]))
            with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as smtp:
                smtp.sendmail("a@client.test", ["b@dest.test"], "Subject: x\r\n\r\nx\r\n")
            self.assertIn("Subject: x", sink.wait_for_rcpt("b@dest.test"))
        finally:
            sink.stop()
            taken.close()

    def test_server_that_fails_otherwise_fails_the_test(self):
        log = os.path.join(self.dir, "server.log")

        def launch(port):
            with open(log, "wb") as f:
                return subprocess.Popen(["sh", "-c", "echo no such option >&2; exit 3"],
                                        stderr=f)

        with self.assertRaises(AssertionError) as e:
            harness.start_on_a_free_port(launch, "a broken server", log)
        self.assertIn("no such option", str(e.exception))

    def test_closed_port_refuses_and_cannot_be_taken(self):
        closed = harness.ClosedPort()
        try:
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", closed.port), timeout=5)
            other = socket.socket()
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with self.assertRaises(OSError) as e:
                other.bind(("127.0.0.1", closed.port))
            self.assertEqual(e.exception.errno, errno.EADDRINUSE)
            other.close()
        finally:
            closed.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
