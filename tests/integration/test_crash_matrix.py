"""The crash matrix: kill -9 at each phase of a message's life, a few rounds each at seeded
random moments under load, restart on the same spool, and check the one invariant: every
message spate answered 250 arrives at the destination after the last restart (every case ends
with an empty spool, so none is left queued). At-least-once: a delivery the next hop answered
before spate recorded it may happen twice; duplicates are counted and printed, not failed.

Phases (test_crash.py kills once at an arbitrary moment; these aim at each window):
- mid_data: some clients are half way through a message's data (the rest keep sending).
- commit_to_250: right after a client's final "." went out, before its reply was read: the
  message is committed or not, but its client cannot know. Such messages are "in doubt"; how
  many of them arrived anyway shows the window was hit.
- mid_delivery: deliveries held at the next hop before its reply to MAIL, after its 354, or
  after the whole data before its 250.
- next_hop_250_to_finish: right after the next hop's 250, before spate's Finish is durable.
- recovery: a few thousand messages queued while the next hop refuses, kill, then restarts
  killed again while the spool is scanned or its messages are being delivered, then a last one.

Each case prints "crash_matrix: phase=X rounds=N acked=A delivered=D duplicates=K ...", and its
seed (CRASH_SEED=<n> replays a run's kill moments).
"""
import os
import shutil
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import crashkit  # noqa: E402
import harness  # noqa: E402

SEED = 1108        # the default seed; CRASH_SEED overrides it
ROUNDS = 3
CLIENTS = 6
PER_CLIENT = 40    # at most 240 messages a round: a bounded load
DRAIN_TIMEOUT = 60
RECOVERY_MESSAGES = 3000
FAULTFS_LIB = os.environ.get("FAULTFS_LIB", "build/tests/faultinject/libfaultfs.so")


def process_state(pid):
    """The state letter of /proc/<pid>/stat: R, S, T (stopped), Z..."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


class CrashMatrix(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.sink = crashkit.HookSink()
        self.spate = None
        self.ledger = crashkit.Ledger()
        self.closed = None
        self.kills = 0

    def tearDown(self):
        if self.spate and self.spate.proc:
            self.spate.stop()
        self.sink.stop()
        if self.closed:
            self.closed.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, port=None, env=None, spool=None):
        """A spate on this case's spool, the next hop at `port` (default: the sink); returns its
        ready line. `spool`: more [spool] settings."""
        self.spate = harness.Spate(self.dir, {"dest.test": port or self.sink.port}, shards=2,
                                   env=env, spool=spool)
        return self.spate.start()

    def killed(self):
        """Reaps spate after a SIGKILL, checking that the kill is what ended it."""
        self.spate.kill9()
        self.kills += 1
        self.assertEqual(self.spate.proc.returncode, -signal.SIGKILL,
                         "spate ended on its own before the kill:\n" +
                         self.spate.read_log()[-3000:])

    def kill_now(self):
        os.kill(self.spate.proc.pid, signal.SIGKILL)

    def finish(self, phase, **more):
        """The last restart, with the next hop accepting: every message answered 250 arrives.
        `more`: more fields for the report line (a callable is called after the drain)."""
        self.sink.release()
        self.sink.after_250 = None
        ready = self.start()
        recovered = int(ready.split("recovered_messages=")[1].split()[0])
        try:
            crashkit.wait_until_delivered(self.spate, self.sink, self.ledger.acked, DRAIN_TIMEOUT)
        except AssertionError:
            pass  # the assertion below says what is missing
        summary = dict(self.ledger.summary(phase, self.sink), rounds=self.kills)
        more = {k: v() if callable(v) else v for k, v in more.items()}
        crashkit.report(summary, recovered_at_last_start=recovered, **more)
        self.assertGreater(summary["acked"], 0)
        self.assertEqual(summary["missing"], [], "answered 250, never delivered")
        self.assertEqual(self.spate.metric("spate_spool_messages"), 0, "mail left queued")
        return summary

    def test_mid_data(self):
        rng = crashkit.seeded_random(SEED, "mid_data")
        cut = set()  # messages whose data was cut off by the kill
        for r in range(ROUNDS):
            self.start()
            pausing = rng.sample(range(CLIENTS), 2)
            pause_at = {c: rng.randint(2, PER_CLIENT // 2) for c in pausing}
            base = r * 10000
            load = crashkit.Load(self.spate.smtp_port, CLIENTS, PER_CLIENT, base=base,
                                 pause_at=pause_at)
            acked_before = rng.randint(10, 60)
            harness.wait_for(lambda: load.mid_data == len(pause_at) and
                             load.acked_count() >= acked_before, 30,
                             "clients half way through their data")
            time.sleep(rng.uniform(0, 0.02))  # a random moment for the clients still sending
            self.killed()
            cut |= {base + c * PER_CLIENT + i for c, i in pause_at.items()}
            self.ledger.add(load)
        self.finish("mid_data", cut_off=len(cut))
        # A message whose data never ended is no message: nothing of it may go out.
        self.assertEqual(cut & self.sink.delivered_set(), set(), "a cut-off message delivered")

    def test_commit_to_250(self):
        rng = crashkit.seeded_random(SEED, "commit_to_250")
        committed_unanswered = []  # per frozen round: messages in the batch synced at the kill
        for r in range(4):
            acked_before = rng.randint(10, 150)
            if r % 2 == 0:
                load = self._kill_after_a_dot(r, acked_before, rng.uniform(0, 0.004))
            else:
                load = self._kill_after_the_wal_sync(r, acked_before)
            self.ledger.add(load)
            if r % 2 == 1:
                committed_unanswered.append(load.in_doubt())
        self.finish("commit_to_250", frozen_unanswered=sum(len(u) for u in committed_unanswered),
                    frozen_unanswered_delivered=lambda: sum(
                        len(u & self.sink.delivered_set()) for u in committed_unanswered))
        # Frozen right after a synced commit: that batch's messages are durable, though their
        # clients never heard a 250. They are delivered (their clients will send them again:
        # at-least-once), not lost.
        for n, unanswered in enumerate(committed_unanswered):
            self.assertTrue(unanswered & self.sink.delivered_set(),
                            f"frozen round {n}: none of the {len(unanswered)} unanswered "
                            "messages delivered, though their batch was synced")

    def test_body_log_sync_to_records(self):
        # Every body in the body log ([spool] body_log_min_size = "0"): frozen right after a
        # batch's bodies are synced, before RocksDB's write of the records that name them.
        # That batch is not committed: its bodies are named by nothing, and must neither come
        # back nor stay on disk once the spool is empty.
        stop = os.path.join(self.dir, "stop-after-body-sync")
        for r in range(ROUNDS):
            self.sink.hold(10 ** 6, "mail")
            self.start(spool={"body_log_min_size": "0"},
                       env=crashkit.preload(FAULTFS_LIB,
                                            FAULTFS_DIR=os.path.join(self.dir, "spool", "bodies"),
                                            FAULTFS_STOP_OPS="fdatasync",
                                            FAULTFS_STOP_SUFFIX=".body",
                                            FAULTFS_STOP_CONTROL=stop))
            load = crashkit.Load(self.spate.smtp_port, CLIENTS, PER_CLIENT, base=r * 10000)
            harness.wait_for(lambda: load.acked_count() >= 20, 30, "20 acknowledged")
            open(stop, "w").close()
            harness.wait_for(lambda: process_state(self.spate.proc.pid) == "T", 30,
                             "spate frozen after a body log sync")
            self.killed()
            self.sink.release()
            self.ledger.add(load)
        self.finish("body_log_sync_to_records")
        files = os.listdir(os.path.join(self.dir, "spool", "bodies"))
        self.assertEqual([f for f in files if not f.endswith(".spare")], [],
                         "the spool is empty, yet body log segments are left")
        self.assertLessEqual(len(files), 2, f"at most two spare segments kept: {files}")

    def _kill_after_a_dot(self, r, acked_before, delay):
        """Kills spate `delay` seconds after some client's final ".", before it read a reply."""
        self.start()
        armed, fired = threading.Event(), threading.Event()

        def on_dot(client, seq):
            if armed.is_set() and not fired.is_set():
                fired.set()
                time.sleep(delay)
                self.kill_now()  # before this client (or most others) read a reply

        load = crashkit.Load(self.spate.smtp_port, CLIENTS, PER_CLIENT, base=r * 10000,
                             on_dot=on_dot)
        harness.wait_for(lambda: load.acked_count() >= acked_before, 30,
                         f"{acked_before} acknowledged")
        armed.set()
        harness.wait_for(fired.is_set, 30, "a final dot after arming")
        self.killed()
        return load

    def _kill_after_the_wal_sync(self, r, acked_before):
        """The shim freezes spate right after its next write-ahead log sync returns (before the
        commit thread can hand out a 250), and spate is killed frozen. The next hop holds every
        delivery at MAIL meanwhile, so that every sync is one of accepted mail, not of outcomes."""
        stop = os.path.join(self.dir, "stop-after-sync")
        self.sink.hold(10 ** 6, "mail")
        self.start(env=crashkit.preload(FAULTFS_LIB, FAULTFS_DIR=os.path.join(self.dir, "spool"),
                                        FAULTFS_STOP_OPS="fdatasync,fsync",
                                        FAULTFS_STOP_SUFFIX=".log", FAULTFS_STOP_CONTROL=stop))
        load = crashkit.Load(self.spate.smtp_port, CLIENTS, PER_CLIENT, base=r * 10000)
        harness.wait_for(lambda: load.acked_count() >= acked_before, 30,
                         f"{acked_before} acknowledged")
        open(stop, "w").close()
        harness.wait_for(lambda: process_state(self.spate.proc.pid) == "T", 30,
                         "spate frozen after a write-ahead log sync")
        self.killed()
        self.sink.release()
        return load

    def test_mid_delivery(self):
        rng = crashkit.seeded_random(SEED, "mid_delivery")
        stages = []
        for r in range(ROUNDS):
            self.start()
            load = crashkit.Load(self.spate.smtp_port, CLIENTS, PER_CLIENT, base=r * 10000)
            stage, held = ["mail", "data", "dot"][r % 3], rng.randint(1, 3)
            stages.append(f"{stage}x{held}")
            delivered_before = self.sink.count + rng.randint(5, 80)
            harness.wait_for(lambda: self.sink.count >= delivered_before, 30,
                             "deliveries under way")
            self.sink.hold(held, stage)
            harness.wait_for(lambda: self.sink.held >= held, 30, f"{held} held at {stage}")
            time.sleep(rng.uniform(0, 0.02))
            self.killed()
            self.sink.release()
            self.ledger.add(load)
        self.finish("mid_delivery", held=",".join(stages))

    def test_next_hop_250_to_finish(self):
        rng = crashkit.seeded_random(SEED, "next_hop_250_to_finish")
        for r in range(ROUNDS):
            self.start()
            at = self.sink.count + rng.randint(5, 120)
            fired = threading.Event()

            def after_250(seq, count, at=at, fired=fired):
                if count == at:
                    self.kill_now()  # the 250 is on its way; spate's Finish is not durable yet
                    fired.set()

            self.sink.after_250 = after_250
            load = crashkit.Load(self.spate.smtp_port, CLIENTS, PER_CLIENT, base=r * 10000)
            harness.wait_for(fired.is_set, 30, f"the next hop's 250 number {at}")
            self.killed()
            self.sink.after_250 = None
            self.ledger.add(load)
        self.finish("next_hop_250_to_finish")

    def test_recovery(self):
        rng = crashkit.seeded_random(SEED, "recovery")
        # A full spool: the next hop refuses connections meanwhile.
        self.closed = harness.ClosedPort()
        self.start(self.closed.port)
        clients = 8
        per_client = RECOVERY_MESSAGES // clients
        load = crashkit.Load(self.spate.smtp_port, clients, per_client, size=256)
        harness.wait_for(lambda: len(load.replies()) and
                         sum(load.replies().values()) >= clients * per_client, 60,
                         f"{RECOVERY_MESSAGES} messages answered")
        self.killed()
        self.ledger.add(load)
        queued = len(self.ledger.acked)
        moments = []
        for r in range(ROUNDS):
            self.spate = harness.Spate(self.dir, {"dest.test": self.sink.port}, shards=2)
            before = self.sink.count
            if r % 2 == 0:
                # Soon after the start: opening the spool, scanning it, or the first deliveries.
                delay = rng.uniform(0.0, 0.3)
                self.spate.launch()
                time.sleep(delay)
                what = f"{delay * 1000:.0f}ms"
            else:
                # Recovered mail on its way: after a random number of its deliveries.
                n = rng.randint(1, max(1, (queued - len(self.sink.delivered_set())) // 2))
                self.spate.launch()
                harness.wait_for(lambda: self.sink.count - before >= n or
                                 self.spate.proc.poll() is not None, 30,
                                 f"{n} recovered deliveries")
                what = f"{n}deliveries"
            ready = self.spate.ready() is not None
            self.killed()
            moments.append(f"{what}/{'ready' if ready else 'scanning'}/"
                           f"{self.sink.count - before}sent")
        self.finish("recovery", queued=queued, kills=",".join(moments))


if __name__ == "__main__":
    unittest.main(verbosity=2)
