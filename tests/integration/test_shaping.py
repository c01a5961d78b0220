"""Traffic shaping end to end (issue 11), against spate-sink pushing back the way mailbox
providers do: a shaping file's max_message_rate holds (20/s within 10% over 200 messages), its
connection_limit and max_deliveries_per_connection hold, an automation rule on "[TS01]" in a
421 suspends the site and keeps its mail queued until the rule's duration is over (no attempt
charged), MT-PRIORITY mail overtakes bulk queued for a slow site, a KumoMTA-style file with keys
spate does not shape loads with warnings, and SIGHUP reloads the shaping file and the routes
while a broken file is refused and the running one stays.
Temporary directories and loopback only; every wait has a deadline.
"""
import json
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

SINK = os.environ.get("SPATE_SINK_BIN", "build/bench/spate-sink")
SENDER = "news@origin.test"
DEADLINE = 90  # seconds, for any one sink


class SpateSink:
    """spate-sink on a loopback port, with pushback `flags`; its JSON at the end, its
    per-second stats meanwhile, and each accepted message's arrival (--arrivals-file)."""

    def __init__(self, workdir, name, *flags):
        self.port_file = os.path.join(workdir, f"{name}.port")
        self.stats_file = os.path.join(workdir, f"{name}-stats.json")
        self.arrivals_file = os.path.join(workdir, f"{name}-arrivals")
        self.proc = subprocess.Popen(
            [SINK, "--listen", "127.0.0.1:0", "--port-file", self.port_file, "--stats-file",
             self.stats_file, "--arrivals-file", self.arrivals_file, "--duration",
             str(DEADLINE), *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        harness.wait_for(lambda: os.path.exists(self.port_file) or self.proc.poll() is not None,
                         10, "spate-sink port file")
        if self.proc.poll() is not None:
            raise AssertionError("spate-sink exited: " + self.proc.stderr.read().decode())
        with open(self.port_file) as f:
            self.port = int(f.read())

    def stats(self):
        """The latest per-second figures (messages, connections, ...); {} before the first."""
        try:
            with open(self.stats_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def messages(self):
        return self.stats().get("messages", 0)

    def finish(self):
        """Stops it; its final JSON and the arrivals [(seconds, connection)], by time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        if self.proc.returncode != 0:
            raise AssertionError(f"spate-sink exited {self.proc.returncode}: {err.decode()}")
        arrivals = []
        with open(self.arrivals_file) as f:
            for line in f:
                usec, conn = line.split()
                arrivals.append((int(usec) / 1e6, int(conn)))
        return json.loads(out), arrivals

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()


def message(n, extra=""):
    return (f"From: {SENDER}\r\nSubject: message {n}\r\n{extra}\r\nbody {n}\r\n").encode()


def submit(port, rcpts, mail_options=()):
    """Each recipient its own message over one connection; the queue ids."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        for n, rcpt in enumerate(rcpts):
            refused = smtp.sendmail(SENDER, [rcpt], message(n), mail_options=list(mail_options))
            assert not refused, refused


def read_records(path):
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        lines = f.read().decode().split("\n")
    return [json.loads(line) for line in lines[:-1]]


class Shaping(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.sinks = []
        self.spate = None
        self.shaping = os.path.join(self.dir, "shaping.toml")

    def tearDown(self):
        if self.spate:
            self.spate.stop()
        for s in self.sinks:
            s.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def sink(self, name, *flags):
        s = SpateSink(self.dir, name, *flags)
        self.sinks.append(s)
        return s

    def start(self, shaping_text, routes, delivery=None, **kw):
        with open(self.shaping, "w") as f:
            f.write(shaping_text)
        settings = {"shaping": self.shaping}
        settings.update(delivery or {})
        self.spate = harness.Spate(self.dir, routes, delivery=settings, log_deliveries=True,
                                   **kw)
        self.spate.start()
        return self.spate

    def records(self, type_=None):
        return [r for r in read_records(self.spate.records_path)
                if type_ is None or r.get("type") == type_]

    def test_a_message_rate_of_20_per_second_holds_within_10_percent_over_200(self):
        sink = self.sink("rate", "--expect", "200")
        spate = self.start('["rate.test"]\nmax_message_rate = "20/s"\nconnection_limit = 4\n',
                           {"rate.test": sink.port})
        submit(spate.smtp_port, [f"r{n}@rate.test" for n in range(200)])
        harness.wait_for(lambda: sink.proc.poll() is not None, 60, "200 messages at the sink")
        result, arrivals = sink.finish()
        self.assertEqual(result["messages"], 200)
        self.assertEqual(len(arrivals), 200)
        spread = arrivals[-1][0] - arrivals[0][0]
        rate = 199 / spread
        self.assertGreaterEqual(rate, 18.0, f"{rate:.2f}/s over {spread:.2f}s")
        self.assertLessEqual(rate, 22.0, f"{rate:.2f}/s over {spread:.2f}s")
        # No burst anywhere: no second of the run took more than 20 (+1 at an edge).
        times = [t for t, _ in arrivals]
        worst = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
        self.assertLessEqual(worst, 21, "the most messages in any one second")
        self.assertEqual(spate.metric("spate_site_max_message_rate", site="rate.test"), 20.0)

    def test_connection_limit_and_max_deliveries_per_connection_hold(self):
        # Slow replies, and one RCPT in twenty deferred (retried, and still within the limits).
        sink = self.sink("conn", "--reply-delay-ms", "20", "--rcpt-tempfail", "0.05")
        spate = self.start(
            '["conn.test"]\nconnection_limit = 3\nmax_deliveries_per_connection = 5\n',
            {"conn.test": sink.port}, delivery={"max_connections": 16})
        submit(spate.smtp_port, [f"c{n}@conn.test" for n in range(60)])
        harness.wait_for(lambda: len(self.records("Delivery")) >= 60, 60, "60 deliveries")
        result, arrivals = sink.finish()
        self.assertEqual(len(self.records("Delivery")), 60)
        self.assertGreater(result["rejected"]["rcpt_4xx"], 0, "the sink deferred some")
        self.assertLessEqual(result["max_concurrent_connections"], 3,
                             "connection_limit = 3 over [delivery] max_connections = 16")
        self.assertEqual(result["max_concurrent_connections"], 3, "the limit is what held")
        self.assertLessEqual(result["max_messages_per_connection"], 5)
        self.assertGreaterEqual(result["connections"], 12, "60 messages, 5 per connection")
        per_conn = {}
        for _, conn in arrivals:
            per_conn[conn] = per_conn.get(conn, 0) + 1
        self.assertLessEqual(max(per_conn.values()), 5)
        self.assertEqual(spate.metric("spate_site_connection_limit", site="conn.test"), 3)
        self.assertEqual(
            spate.metric("spate_site_max_deliveries_per_connection", site="conn.test"), 5)

    def test_provider_limits_hold_over_every_site_of_the_provider_on_every_shard(self):
        sink = self.sink("provider", "--reply-delay-ms", "20")
        # Four domains, each a site of its own (static routes), spread over two shards; one
        # provider by their suffix.
        domains = [f"d{n}.prov.test" for n in range(4)]
        spate = self.start(
            '[provider."prov"]\nmatch = [{DomainSuffix = ".prov.test"}]\n'
            'connection_limit = 4\nprovider_connection_limit = 2\n'
            'provider_max_message_rate = "20/s"\n',
            {d: sink.port for d in domains}, shards=2)
        submit(spate.smtp_port, [f"p{n}@{domains[n % 4]}" for n in range(80)])
        harness.wait_for(lambda: sink.messages() >= 80, 60, "80 messages at the sink")
        result, arrivals = sink.finish()
        self.assertLessEqual(result["max_concurrent_connections"], 2,
                             "provider_connection_limit = 2 over four sites of 4 each")
        spread = arrivals[-1][0] - arrivals[0][0]
        self.assertGreaterEqual(spread, 79 / 20 * 0.9, "20/s for the provider, not per site")
        for d in domains:
            self.assertEqual(spate.metric("spate_site_connection_limit", site=d), 4)

    def test_a_ts01_421_suspends_the_site_and_it_resumes_after_the_duration(self):
        sink = self.sink("ts01", "--first-421", "1", "--text-421",
                         "4.7.0 [TS01] Messages from 127.0.0.1 temporarily deferred")
        spate = self.start(
            '["ts01.test"]\nconnection_limit = 1\n'
            '[["ts01.test".automation]]\nregex = "\\\\[TS01\\\\]"\naction = "Suspend"\n'
            'duration = "3s"\n',
            {"ts01.test": sink.port})
        rcpts = [f"t{n}@ts01.test" for n in range(10)]
        submit(spate.smtp_port, rcpts)
        fired = harness.wait_for(
            lambda: [r for r in self.records("Automation") if r.get("event") == "fired"],
            15, "the rule's fired record")[0]
        fired_at = time.monotonic()
        self.assertEqual(fired["site"], "ts01.test")
        self.assertEqual(fired["action"], "Suspend")
        self.assertEqual(fired["rule"], "ts01.test:3")
        self.assertIn("[TS01]", fired["reply"]["text"])
        self.assertEqual(fired["reply"]["code"], 421)
        self.assertEqual(spate.metric("spate_site_suspended", site="ts01.test"), 1)
        self.assertEqual(spate.metric("spate_automation_active", site="ts01.test",
                                      rule="ts01.test:3"), 1)
        # Suspended: the mail stays queued, nothing reaches the server.
        time.sleep(max(0.0, 1.5 - (time.monotonic() - fired_at)))
        self.assertEqual(sink.messages(), 0, "nothing delivered while suspended")
        self.assertEqual(spate.metric("spate_queue_recipients", domain="ts01.test"), 10)
        # After the 3 s, it resumes (one connection: the limit comes back by steps).
        harness.wait_for(lambda: sink.messages() >= 10, 30, "all 10 delivered after it")
        self.assertGreaterEqual(time.monotonic() - fired_at, 2.5, "not before the duration")
        harness.wait_for(lambda: any(r.get("event") == "ended"
                                     for r in self.records("Automation")), 20, "the rule's end")
        events = [r["event"] for r in self.records("Automation")]
        self.assertEqual(events, ["fired", "recovering", "ended"])
        self.assertEqual(spate.metric("spate_site_suspended", site="ts01.test"), 0)
        self.assertEqual(spate.metric("spate_site_suspensions_total", site="ts01.test"), 1)
        # The recipient the 421 deferred was not charged an attempt for it.
        deferred = [r for r in self.records("TransientFailure")]
        self.assertEqual(len(deferred), 1, deferred)
        again = [r for r in self.records("Delivery")
                 if r["recipient"] == deferred[0]["recipient"]]
        self.assertEqual(again[0]["attempts"], 1, "the 421 [TS01] was no attempt")
        self.assertEqual(len(self.records("Delivery")), 10)

    def test_mt_priority_mail_overtakes_bulk_queued_for_a_slow_site(self):
        sink = self.sink("slow", "--reply-delay-ms", "40")
        spate = self.start('["slow.test"]\nconnection_limit = 1\n', {"slow.test": sink.port},
                           server={"relay_networks": ["127.0.0.0/8"]})
        submit(spate.smtp_port, [f"bulk{n}@slow.test" for n in range(50)])
        submit(spate.smtp_port, ["urgent@slow.test"], mail_options=["MT-PRIORITY=9"])
        harness.wait_for(lambda: len(self.records("Delivery")) >= 51, 60, "51 deliveries")
        order = [r["recipient"] for r in sorted(self.records("Delivery"),
                                                key=lambda r: r["time"])]
        position = order.index("urgent@slow.test")
        self.assertLess(position, 25, f"delivered {position + 1}th of 51: {order[:position]}")

    def test_a_kumomta_style_file_with_unknown_keys_loads_with_warnings(self):
        sink = self.sink("kumo")
        kumo = """
["default"]
connection_limit = 7
mx_rollup = false
smtp_port = 2525
enable_tls = "OpportunisticInsecure"

[provider."example"]
match = [{MXSuffix = ".example.net"}, {HostName = "mx.example.org"}]
provider_connection_limit = 20
consecutive_connection_failures_before_delay = 100

["kumo.test"]
max_deliveries_per_connection = 9
prohibited_hosts = ["127.0.0.0/8"]
"""
        with open(self.shaping, "w") as f:
            f.write(kumo)
        spate = harness.Spate(self.dir, {"kumo.test": sink.port},
                              delivery={"shaping": self.shaping})
        check = subprocess.run([harness.SPATE, "--check-config", "--config", spate.config],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertIn("configuration ok", check.stdout)
        for key, line in [("mx_rollup", 4), ("smtp_port", 5), ("HostName", 9),
                          ("consecutive_connection_failures_before_delay", 11),
                          ("prohibited_hosts", 15)]:
            self.assertRegex(check.stderr, rf"shaping warning: .*line {line}: .*{key}")
        self.spate = spate
        spate.start()
        self.assertIn("shaping warning", spate.read_log())
        submit(spate.smtp_port, ["k@kumo.test"])
        harness.wait_for(lambda: sink.messages() >= 1, 20, "the message at the sink")
        # What spate does shape applies: the default's limit and the domain's own.
        self.assertEqual(spate.metric("spate_site_connection_limit", site="kumo.test"), 7)
        self.assertEqual(
            spate.metric("spate_site_max_deliveries_per_connection", site="kumo.test"), 9)

    def test_sighup_reloads_shaping_and_routes_and_refuses_a_broken_file(self):
        first, second = self.sink("first"), self.sink("second")
        spate = self.start('["reload.test"]\nconnection_limit = 2\n',
                           {"reload.test": first.port, "moved.test": first.port})
        submit(spate.smtp_port, ["a@reload.test", "a@moved.test"])
        harness.wait_for(lambda: first.messages() >= 2, 20, "two messages at the first sink")
        self.assertEqual(spate.metric("spate_site_connection_limit", site="reload.test"), 2)

        # A new limit, and moved.test routed to the second sink.
        with open(self.shaping, "w") as f:
            f.write('["reload.test"]\nconnection_limit = 5\n')
        with open(spate.config) as f:
            config = f.read()
        with open(spate.config, "w") as f:
            f.write(config.replace(f'"moved.test" = "127.0.0.1:{first.port}"',
                                   f'"moved.test" = "127.0.0.1:{second.port}"'))
        spate.proc.send_signal(signal.SIGHUP)
        spate.wait_for_log(r"spate: reloaded: shaping ", 10)
        submit(spate.smtp_port, ["b@reload.test", "b@moved.test"])
        harness.wait_for(lambda: second.messages() >= 1, 20, "moved.test at the second sink")
        harness.wait_for(lambda: first.messages() >= 3, 20, "reload.test at the first sink")
        self.assertEqual(spate.metric("spate_site_connection_limit", site="reload.test"), 5)

        # A broken file: refused, said so, and the running shaping stays.
        with open(self.shaping, "w") as f:
            f.write('["reload.test"]\nconnection_limit = "many"\n')
        spate.proc.send_signal(signal.SIGHUP)
        log = spate.wait_for_log(r"reload refused: \[delivery\] shaping .*line 2", 10)
        self.assertIn("the running one stays", log)
        submit(spate.smtp_port, ["c@reload.test"])
        harness.wait_for(lambda: first.messages() >= 4, 20, "c@reload.test delivered")
        self.assertEqual(spate.metric("spate_site_connection_limit", site="reload.test"), 5)
        self.assertIsNone(spate.proc.poll(), "still running")


if __name__ == "__main__":
    unittest.main()
