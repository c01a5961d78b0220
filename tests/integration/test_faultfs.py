"""I/O errors under the spool: spate runs with the faultfs shim (tests/faultinject/faultfs.c)
preloaded, which fails the spool's write, fsync/fdatasync, fallocate... with EIO or ENOSPC
while a control file exists. Under load the test turns faults on, watches what spate does
(answers 451/452, or dies), turns them off, restarts spate without the shim on the same spool,
and checks the invariant: every message answered 250 arrives at the destination. Also: no 250
for a message whose final "." went out after the faults were on and whose reply came before
they were off (its commit was written entirely while every write or sync failed).

Each case prints a "faultfs: ..." line with what spate did. CRASH_SEED replays the random
moments (and the random faults of the recovery case).

What spate must do (queue/spool.h, "Health"): stay up, refuse new mail with 451 4.3.0 (an
I/O error) or 452 4.3.1 (ENOSPC), at MAIL once it knows, and take mail again by itself once the
faults are gone (RocksDB's Resume(), or the spool opened again after a fatal error). Debian's
RocksDB 7.8 is built with assertions on: after a failed write to the write-ahead log, its
WritableFileWriter aborts the process on the next call (writable_file_writer.h:312,
`sync_without_flush_called_'), so the spool must never write again through a broken log; these
cases are what holds it to that.
"""
import os
import shutil
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import crashkit  # noqa: E402
import harness  # noqa: E402

SEED = 1108
FAULTFS_LIB = os.environ.get("FAULTFS_LIB", "build/tests/faultinject/libfaultfs.so")
CLIENTS = 6
PER_CLIENT = 150        # at most 900 messages a case
REFUSALS = 20           # faults on until spate refused this many, or died
WAL_WRITES = "write,pwrite,fallocate"
WAL_SYNCS = "fdatasync,fsync"


def outcome(returncode):
    if returncode is None:
        return "alive"
    if returncode < 0:
        return f"killed-by-{signal.Signals(-returncode).name}"
    return f"exit-{returncode}"


class FaultInjection(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.spool = os.path.join(self.dir, "spool")
        self.control = os.path.join(self.dir, "faults-on")
        self.fault_log = os.path.join(self.dir, "faults.log")
        self.sink = crashkit.HookSink()
        self.spate = None
        self.closed = None

    def tearDown(self):
        if self.spate and self.spate.proc and self.spate.proc.poll() is None:
            self.spate.kill9()
        self.sink.stop()
        if self.closed:
            self.closed.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def shim(self, ops, err, control=True, under=None, **more):
        env = crashkit.preload(FAULTFS_LIB, FAULTFS_DIR=under or self.spool, FAULTFS_OPS=ops,
                               FAULTFS_ERRNO=err, FAULTFS_LOG=self.fault_log)
        if control:
            env["FAULTFS_CONTROL"] = self.control
        env.update({f"FAULTFS_{k.upper()}": str(v) for k, v in more.items()})
        return env

    def faults_injected(self):
        if not os.path.exists(self.fault_log):
            return []
        with open(self.fault_log) as f:
            return f.read().splitlines()

    def evidence(self):
        """spate's own words about the spool: its first error lines, and an assertion."""
        lines = [l for l in self.spate.read_log().splitlines()
                 if "spool" in l and "error" in l or "Assertion" in l or "spate:" in l[:7]]
        firsts, seen = [], set()
        for l in lines:
            key = l.split(" ", 1)[-1][:60]
            if key not in seen:
                seen.add(key)
                firsts.append(l.strip()[:300])
        return firsts[:4]

    def faults_under_load(self, name, ops, err, body_log=False, **more):
        """Runs spate with the shim under load, faults on from a random moment until it has
        refused REFUSALS messages or died, then off. Returns what happened. `body_log`: every
        body goes to the spool's body log, and only its files fail."""
        rng = crashkit.seeded_random(SEED, name, prefix="faultfs")
        under = os.path.join(self.spool, "bodies") if body_log else None
        self.spate = harness.Spate(self.dir, {"dest.test": self.sink.port}, shards=2,
                                   spool={"body_log_min_size": "0"} if body_log else None,
                                   env=self.shim(ops, err, under=under, **more))
        self.spate.start()
        load = crashkit.Load(self.spate.smtp_port, CLIENTS, PER_CLIENT)
        acked_before = rng.randint(30, 120)
        harness.wait_for(lambda: load.acked_count() >= acked_before, 30,
                         f"{acked_before} acknowledged")
        open(self.control, "w").close()
        on = time.monotonic()
        harness.wait_for(lambda: self.spate.proc.poll() is not None or
                         sum(load.refusals().values()) >= REFUSALS, 30,
                         "refusals or an exit with faults on")
        under_fault = load.replies()
        with load.lock:
            under_fault.update(load.early)  # refused at MAIL, RCPT or DATA
        off = time.monotonic()
        os.unlink(self.control)
        # Once the faults are gone, does spate take mail again, without a restart?
        try:
            harness.wait_for(lambda: self.spate.proc.poll() is not None or
                             any(load.sent_dot[s] > off for s in load.acked), 15,
                             "a 250 after the faults were off")
        except AssertionError:
            pass
        accepts_again = any(load.sent_dot[s] > off for s in load.acked)
        returncode = self.spate.proc.poll()
        load.stop()
        return {
            "load": load, "on": on, "off": off, "under_fault": under_fault,
            "accepts_again": accepts_again and returncode is None, "returncode": returncode,
            "acked_under_fault": load.acked_between(on, off), "evidence": self.evidence(),
        }

    def restart_and_check(self, name, result, ops, err):
        """Kills spate (when still up), restarts it without the shim on the same spool, and
        checks the invariant. Prints what happened."""
        self.spate.kill9()  # when still up; reaps it either way
        load = result["load"]
        acked = set(load.acked)
        self.spate = harness.Spate(self.dir, {"dest.test": self.sink.port}, shards=2)
        ready = self.spate.start()
        try:
            crashkit.wait_until_delivered(self.spate, self.sink, acked, 60)
        except AssertionError:
            pass  # the assertions below say what is missing
        ledger = crashkit.Ledger()
        ledger.add(load)
        summary = ledger.summary(name, self.sink)
        injected = self.faults_injected()
        print(f"faultfs: case={name} ops={ops} errno={err} spate={outcome(result['returncode'])} "
              f"replies_under_fault={dict(result['under_fault'])} "
              f"acked_under_fault={len(result['acked_under_fault'])} "
              f"accepts_again_without_restart={result['accepts_again']} "
              f"faults_injected={len(injected)} "
              f"recovered={ready.split('recovered_messages=')[1].split()[0]}", flush=True)
        crashkit.report(summary, prefix="faultfs")
        for line in result["evidence"]:
            print(f"faultfs:   spate said: {line}", flush=True)
        self.assertTrue(injected, "the shim injected no fault: the test tested nothing")
        self.assertEqual(summary["missing"], [], "answered 250, never delivered")
        self.assertEqual(result["acked_under_fault"], set(),
                         "answered 250 while every write or sync of the spool failed")
        return summary

    def assert_stayed_up_and_recovered(self, r, codes):
        self.assertIsNone(r["returncode"], "spate died under the faults")
        self.assertEqual(set(r["under_fault"]) - {250}, codes, r["under_fault"])
        self.assertTrue(r["accepts_again"], "no 250 once the faults were gone")

    # --- EIO: refused with 451, then mail is taken again ----------------------------------

    def test_eio_on_wal_write_loses_nothing_acknowledged(self):
        r = self.faults_under_load("eio_write", WAL_WRITES, "EIO")
        self.restart_and_check("eio_write", r, WAL_WRITES, "EIO")
        self.assert_stayed_up_and_recovered(r, {451})

    def test_eio_on_wal_sync_is_answered_451_and_loses_nothing(self):
        r = self.faults_under_load("eio_sync", WAL_SYNCS, "EIO")
        self.restart_and_check("eio_sync", r, WAL_SYNCS, "EIO")
        # A failed sync is refused, the client keeps the message (RFC 5321 §4.2.3).
        self.assert_stayed_up_and_recovered(r, {451})

    # --- ENOSPC: a full disk, short writes first (a torn record at the end of the log) ----

    # The shim's ENOSPC does not show in statvfs, so min_free_space cannot see it coming:
    # RocksDB meets it, and spate must answer 452 4.3.1, stay up and resume by itself.
    # A full disk is a recoverable error: RocksDB's Resume() is all it takes, not opening the
    # spool again (which replays its whole write-ahead log, accepting nothing meanwhile).
    def test_enospc_on_wal_write_is_answered_452_and_resumed(self):
        r = self.faults_under_load("enospc_write", WAL_WRITES, "ENOSPC", short=1)
        log = self.spate.read_log()
        self.restart_and_check("enospc_write", r, WAL_WRITES, "ENOSPC")
        self.assert_stayed_up_and_recovered(r, {452})
        self.assertNotIn("opened again after a fatal error", log,
                         "a full disk was taken for a fatal error")

    # --- the body log ([spool] body_log_min_size): its appends, syncs and new files fail ---
    # The restart keeps the default size (64 KB, above these bodies): what was written to the
    # log is read from it whatever the setting says now.

    BODY_LOG_OPS = "pwrite,fdatasync,fsync,open"

    def test_eio_on_body_log_is_answered_451_and_loses_nothing(self):
        r = self.faults_under_load("eio_body_log", self.BODY_LOG_OPS, "EIO", body_log=True)
        self.restart_and_check("eio_body_log", r, self.BODY_LOG_OPS, "EIO")
        self.assert_stayed_up_and_recovered(r, {451})

    def test_enospc_on_body_log_is_answered_452_and_resumed(self):
        r = self.faults_under_load("enospc_body_log", self.BODY_LOG_OPS, "ENOSPC", body_log=True,
                                   short=1)
        self.restart_and_check("enospc_body_log", r, self.BODY_LOG_OPS, "ENOSPC")
        self.assert_stayed_up_and_recovered(r, {452})

    # --- every call fails from a random one on, while a full spool is recovered ----------

    def test_faults_from_a_random_call_on_during_recovery_lose_nothing(self):
        # FAULTFS_AFTER: the first N calls on the spool's files pass, every later one fails.
        # Small N hit the opening of the spool (renames, the MANIFEST, flushing the recovered
        # log to a table), larger ones the recovery scan and the deliveries' Finish commits.
        rng = crashkit.seeded_random(SEED, "recovery_faults", prefix="faultfs")
        self.closed = harness.ClosedPort()
        self.spate = harness.Spate(self.dir, {"dest.test": self.closed.port}, shards=2)
        self.spate.start()
        load = crashkit.Load(self.spate.smtp_port, 8, 125, size=256)
        harness.wait_for(lambda: sum(load.replies().values()) >= 1000, 60,
                         "1,000 messages answered")
        self.spate.kill9()
        load.stop()
        acked = set(load.acked)
        rounds = []
        for r in range(4):
            err = ["EIO", "ENOSPC"][r % 2]
            after = rng.randint(0, 250)
            deliveries = rng.randint(50, 300)
            self.spate = harness.Spate(
                self.dir, {"dest.test": self.sink.port}, shards=2,
                env=self.shim("all", err, control=False, after=after))
            self.spate.launch()
            before = self.sink.count
            # Until it gives up, or has been up and delivering for a while.
            try:
                harness.wait_for(lambda: self.spate.proc.poll() is not None or
                                 self.sink.count - before >= deliveries, 10,
                                 "an exit or deliveries under faults")
            except AssertionError:
                pass
            returncode = self.spate.proc.poll()
            ready = self.spate.ready() is not None
            self.spate.kill9()
            rounds.append(f"{err}-after-{after}:{outcome(returncode)}/"
                          f"{'ready' if ready else 'not-ready'}/{self.sink.count - before}sent")
        evidence = self.evidence()
        self.spate = harness.Spate(self.dir, {"dest.test": self.sink.port}, shards=2)
        self.spate.start()
        try:
            crashkit.wait_until_delivered(self.spate, self.sink, acked, 60)
        except AssertionError:
            pass  # the assertions below say what is missing
        ledger = crashkit.Ledger()
        ledger.add(load)
        summary = ledger.summary("recovery_faults", self.sink)
        print(f"faultfs: case=recovery_faults rounds={','.join(rounds)} "
              f"faults_injected={len(self.faults_injected())}", flush=True)
        crashkit.report(summary, prefix="faultfs")
        for line in evidence:
            print(f"faultfs:   spate said: {line}", flush=True)
        self.assertTrue(self.faults_injected(), "the shim injected no fault")
        self.assertEqual(summary["missing"], [], "answered 250, never delivered")
        self.assertEqual(self.spate.metric("spate_spool_messages"), 0, "mail left queued")


if __name__ == "__main__":
    unittest.main(verbosity=2)
