"""Nodes sharing the shaping limits in Redis (issue 15): two spate nodes with one shaping file
and one Redis (Debian's redis-server on loopback) deliver to one spate-sink. A site's
max_message_rate of 10/s holds for the two together (within 15%), and its connection_limit for
their connections together. Redis killed mid-run: the nodes fall back to the limit divided by
the node count, say so in the log and the metrics, and every message is delivered, once; with
fallback = "hold" delivery waits for Redis while mail is still accepted. The suppression list
and the suspensions made on one node hold on the other.
"""
import json
import os
import shutil
import smtplib
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from redis_server import RedisServer  # noqa: E402
from test_shaping import SpateSink, read_records, submit  # noqa: E402


class Cluster(unittest.TestCase):
    def setUp(self):
        self.dir = harness.tempdir()
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.redis = RedisServer(os.path.join(self.dir, "redis"))
        self.addCleanup(self.redis.kill)

    def sink(self, name, *flags):
        s = SpateSink(self.dir, name, *flags)
        self.addCleanup(s.kill)
        return s

    def ctl(self, node, *args):
        admin = node.ready().split(" admin=")[1].split()[0]
        out = subprocess.run([harness.SPATE, "ctl", "--config", node.config, "--admin", admin,
                              *args], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, f"ctl {args}: {out.stdout}{out.stderr}")
        return out.stdout

    def nodes(self, shaping_text, domain, port, delivery=None, cluster=None):
        shaping = os.path.join(self.dir, "shaping.toml")
        with open(shaping, "w") as f:
            f.write(shaping_text)
        nodes = []
        for name in ("a", "b"):
            workdir = os.path.join(self.dir, name)
            os.makedirs(workdir)
            settings = {"shaping": shaping}
            settings.update(delivery or {})
            domains = domain if isinstance(domain, list) else [domain]
            node = harness.Spate(
                workdir, {d: port for d in domains}, shards=2, delivery=settings,
                sections={"cluster": {"redis": self.redis.address, "node": name, "nodes": 2,
                                      **(cluster or {})}})
            self.addCleanup(node.stop)
            node.start()
            nodes.append(node)
        for node in nodes:
            harness.wait_for(lambda n=node: n.metric("spate_cluster_mode", mode="shared") == 2,
                             10, "both shards of the node sharing the limits")
            harness.wait_for(lambda n=node: n.metric("spate_cluster_nodes") == 2, 10,
                             "two live nodes")
        return nodes

    def submit_to_all(self, nodes, domain, count):
        """count messages to each node at once (a thread each); returns the recipients."""
        threads = [threading.Thread(target=submit, args=(
            node.smtp_port, [f"{name}{n}@{domain}" for n in range(count)]))
            for node, name in zip(nodes, ("a", "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return {f"{name}{n}@{domain}" for name in ("a", "b") for n in range(count)}

    def test_a_sites_rate_holds_for_the_nodes_together(self):
        sink = self.sink("rate", "--expect", "100")
        nodes = self.nodes('["rate.test"]\nmax_message_rate = "10/s"\n', "rate.test", sink.port)
        self.submit_to_all(nodes, "rate.test", 50)
        harness.wait_for(lambda: sink.proc.poll() is not None, 60, "100 messages at the sink")
        result, arrivals = sink.finish()
        self.assertEqual(result["messages"], 100)
        spread = arrivals[-1][0] - arrivals[0][0]
        rate = 99 / spread
        # Each node alone would send 10/s (20/s together): the fleet's is 10/s.
        self.assertGreaterEqual(rate, 8.5, f"{rate:.2f}/s over {spread:.2f}s")
        self.assertLessEqual(rate, 11.5, f"{rate:.2f}/s over {spread:.2f}s")
        for node in nodes:
            self.assertEqual(node.metric("spate_cluster_redis_errors_total"), 0)

    def test_a_sites_connection_limit_holds_for_the_nodes_together(self):
        sink = self.sink("conn", "--reply-delay-ms", "30", "--expect", "80")
        nodes = self.nodes('["conn.test"]\nconnection_limit = 2\n', "conn.test", sink.port,
                           delivery={"max_connections": 16})
        self.submit_to_all(nodes, "conn.test", 40)
        harness.wait_for(lambda: sink.proc.poll() is not None, 60, "80 messages at the sink")
        result, _ = sink.finish()
        self.assertEqual(result["messages"], 80)
        # Each node alone would open 2 (4 together).
        self.assertLessEqual(result["max_concurrent_connections"], 2)
        self.assertEqual(result["max_concurrent_connections"], 2, "the limit is what held")

    def test_redis_killed_mid_run_the_limit_is_divided_and_nothing_is_lost(self):
        sink = self.sink("outage", "--expect", "100")
        nodes = self.nodes('["outage.test"]\nmax_message_rate = "10/s"\n', "outage.test",
                           sink.port)
        rcpts = self.submit_to_all(nodes, "outage.test", 50)
        harness.wait_for(lambda: sink.messages() >= 20, 30, "a few delivered under Redis")
        self.redis.kill()
        for node in nodes:
            harness.wait_for(lambda n=node: n.metric("spate_cluster_mode", mode="divided") == 2,
                             15, "both shards on the fallback")
            node.wait_for_log("each limit divided by 2 nodes", 10)
        harness.wait_for(lambda: sink.proc.poll() is not None, 60, "all 100 at the sink")
        result, arrivals = sink.finish()
        self.assertEqual(result["messages"], 100)
        # Divided: 5/s each, still about 10/s together (within 15%), after the outage too.
        after = [t for t, _ in arrivals[40:]]
        rate = (len(after) - 1) / (after[-1] - after[0])
        self.assertLessEqual(rate, 11.5, f"{rate:.2f}/s after Redis went")
        delivered = [r["recipient"] for node in nodes for r in read_records(node.records_path)
                     if r.get("type") == "Delivery"]
        self.assertEqual(sorted(delivered), sorted(rcpts), "each delivered once")

    def test_a_providers_rate_and_connection_limit_hold_for_the_nodes_together(self):
        sink = self.sink("provider", "--expect", "80")
        domains = [f"d{n}.prov.test" for n in range(4)]  # four sites, one provider
        nodes = self.nodes('[provider."prov"]\nmatch = [{DomainSuffix = ".prov.test"}]\n'
                           'provider_connection_limit = 2\nprovider_max_message_rate = "10/s"\n',
                           domains, sink.port)
        threads = [threading.Thread(target=submit, args=(
            node.smtp_port, [f"{name}{n}@{domains[n % 4]}" for n in range(40)]))
            for node, name in zip(nodes, ("a", "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        harness.wait_for(lambda: sink.proc.poll() is not None, 60, "80 messages at the sink")
        result, arrivals = sink.finish()
        self.assertEqual(result["messages"], 80)
        # At most the provider's 10/s for both nodes (each alone would send 10/s); slower is
        # allowed: eight sites (four per node) take turns at its two connections.
        rate = 79 / (arrivals[-1][0] - arrivals[0][0])
        self.assertLessEqual(rate, 11.5, f"{rate:.2f}/s")
        times = [t for t, _ in arrivals]
        worst = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
        self.assertLessEqual(worst, 12, "the most messages in any one second")
        self.assertLessEqual(result["max_concurrent_connections"], 2,
                             "provider_connection_limit = 2 for both nodes")

    def test_with_fallback_hold_delivery_waits_for_redis_and_accepting_goes_on(self):
        sink = self.sink("hold")
        a, _ = self.nodes("", "hold.test", sink.port, cluster={"fallback": "hold"})
        submit(a.smtp_port, [f"before{n}@hold.test" for n in range(5)])
        harness.wait_for(lambda: sink.messages() == 5, 15, "delivered while Redis is up")
        self.redis.kill()
        harness.wait_for(lambda: a.metric("spate_cluster_mode", mode="held") == 2, 15,
                         "both shards holding")
        a.wait_for_log("delivery held until Redis answers", 5)
        submit(a.smtp_port, [f"during{n}@hold.test" for n in range(5)])  # still accepted
        time.sleep(2)
        self.assertEqual(sink.messages(), 5, "nothing delivered while Redis is away")
        self.redis.restart()
        harness.wait_for(lambda: sink.messages() == 10, 20, "delivered once Redis is back")
        self.assertEqual(a.metric("spate_cluster_mode", mode="shared"), 2)

    def test_the_suppression_list_and_suspensions_are_shared(self):
        sink = self.sink("shared")
        a, b = self.nodes("", "dest.test", sink.port)
        # A suppression added on one node refuses the address on the other.
        self.ctl(a, "suppression", "add", "Gone@Dest.Test", "--reason", "left the company")

        def refused_on_b():
            with smtplib.SMTP("127.0.0.1", b.smtp_port, timeout=30) as smtp:
                smtp.ehlo("client.test")
                smtp.mail("s@campaign.test")
                code, msg = smtp.rcpt("gone@dest.test")
                return (code, msg) if code == 550 else None
        code, msg = harness.wait_for(refused_on_b, 10, "refused on node b")
        self.assertIn(b"5.1.1", msg)
        self.assertIn(b"left the company", msg)
        # A suspension on node b holds node a's mail for the domain; a resume releases it.
        self.ctl(b, "suspend", "--domain", "dest.test", "--reason", "their maintenance")
        harness.wait_for(lambda: json.loads(self.ctl(a, "--json", "suspensions"))["suspensions"],
                         10, "the suspension on node a")
        submit(a.smtp_port, ["held@dest.test"])
        harness.wait_for(lambda: a.metric("spate_queue_recipients", domain="dest.test") >= 1, 10,
                         "queued on node a")
        time.sleep(2)
        self.assertEqual(sink.messages(), 0, "held while suspended")
        self.ctl(b, "resume", "--domain", "dest.test")
        harness.wait_for(lambda: sink.messages() == 1, 15, "released on node a and delivered")
        self.assertEqual(json.loads(self.ctl(a, "--json", "suspensions"))["suspensions"], [])
        a.wait_for_log("cluster: suspend domain dest.test set by another node", 5)

    def test_a_redis_that_wants_a_password_gets_it_from_the_password_file(self):
        guarded = RedisServer(os.path.join(self.dir, "guarded"), password="s3cret pass")
        self.addCleanup(guarded.kill)
        password_file = os.path.join(self.dir, "redis.password")
        with open(password_file, "w") as f:
            f.write("s3cret pass\n")
        workdir = os.path.join(self.dir, "n")
        os.makedirs(workdir)
        node = harness.Spate(
            workdir, {}, shards=2,
            sections={"cluster": {"redis": guarded.address, "node": "n",
                                  "redis_password_file": password_file}})
        self.addCleanup(node.stop)
        node.start()
        harness.wait_for(lambda: node.metric("spate_cluster_mode", mode="shared") == 2, 10,
                         "shared: AUTH accepted")

    def test_a_password_file_that_cannot_be_read_stops_the_start_naming_it(self):
        config = os.path.join(self.dir, "bad.toml")
        with open(config, "w") as f:
            f.write(f'[cluster]\nredis = "{self.redis.address}"\n'
                    'redis_password_file = "/nonexistent/redis.password"\n')
        r = subprocess.run([harness.SPATE, "--config", config, "--check-config"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("[cluster] redis_password_file /nonexistent/redis.password", r.stderr)


if __name__ == "__main__":
    unittest.main()
