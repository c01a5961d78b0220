"""The operator's deployment files (deploy/, issue 13): promtool accepts the alerting rules and
the Prometheus config; deploy/spate.production.toml passes --check-config once its certificate,
users, shaping and DKIM key paths point at real files; the systemd unit verifies; the
Containerfile's runtime stage installs every library the built spate links, and its build stage
every library deploy/install-deps.sh builds with; the Grafana dashboard and its provisioning are
well formed and cover the metrics an operator watches.
Then the proof on a real Prometheus (Debian's, on a free loopback port, scraping spate every
second): spate gets traffic that gives every panel data (deliveries over STARTTLS and in the
clear, a deferral, bounces, a suppressed RCPT, a shaping automation rule that suspends a site,
DKIM signatures and a message that cannot be signed); every query of every dashboard panel, with
its template variables filled in as Grafana would, must succeed and return data; every alerting
rule loads, is evaluated without error, and its query runs; the bounce-rate rule goes pending for
the domain that bounces everything and the DKIM rule fires; the domain variable lists the
domains; and `promtool check metrics` passes spate's /metrics text.
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
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import tls_sink  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
DATA = os.path.join(ROOT, "tests", "data")
RULES = os.path.join(DEPLOY, "prometheus", "spate-rules.yml")
PROMETHEUS_YML = os.path.join(DEPLOY, "prometheus", "prometheus.yml")
DASHBOARD = os.path.join(DEPLOY, "grafana", "spate-dashboard.json")
PRODUCTION = os.path.join(DEPLOY, "spate.production.toml")
UNIT = os.path.join(DEPLOY, "systemd", "spate.service")
CONTAINERFILE = os.path.join(DEPLOY, "Containerfile")
SINK = os.environ.get("SPATE_SINK_BIN", "build/bench/spate-sink")
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SENDER = "news@origin.test"
# What Grafana puts in for the template variables: "All" domains (the variable's allValue),
# and $__rate_interval for a 1 s scrape interval.
VARIABLES = {"domain": ".*", "__rate_interval": "5s"}
# The automation rule of the shaping file below: ["ts01.test"] is on line 1, the rule's table on
# line 3 (the rule is named LAYER:LINE).
SHAPING = ('["ts01.test"]\nconnection_limit = 1\n'
           '[["ts01.test".automation]]\nregex = "\\\\[TS01\\\\]"\naction = "Suspend"\n'
           'duration = "30s"\n')
BOUNCES = 40  # messages to bounce.test, every one refused by the sink with 550 5.1.1


def installed(program):
    """`program`'s path; fails, saying how to get it, when it is not installed."""
    if not os.access(program, os.X_OK):
        raise AssertionError(f"{program} is missing: ./deploy/install-deps.sh installs it")
    return program


def read(path):
    with open(path) as f:
        return f.read()


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


def dashboard_targets(dashboard):
    """[(panel title, refId, expr)] of every panel, rows' collapsed panels included."""
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                out.append((p["title"], t.get("refId", "?"), t.get("expr", "")))
    walk(dashboard["panels"])
    return out


def substitute(expr):
    """The query Grafana sends for `expr`: $name and ${name} replaced by their values."""
    def value(m):
        name = m.group(1) or m.group(2)
        if name not in VARIABLES:
            raise AssertionError(f"unknown template variable ${name} in {expr}")
        return VARIABLES[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def containerfile_stages():
    """The Containerfile's build stage and runtime stage, as text."""
    text = read(CONTAINERFILE)
    froms = [m.start() for m in re.finditer(r"^FROM ", text, re.M)]
    assert len(froms) == 2, "a build stage and a runtime stage"
    return text[froms[0]:froms[1]], text[froms[1]:]


class DeployFiles(unittest.TestCase):
    """The files on their own: each checked by the tool that will read it."""

    def setUp(self):
        self.dir = harness.tempdir()

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_promtool_accepts_the_rules_and_the_prometheus_config(self):
        r = run([installed(PROMTOOL), "check", "rules", RULES])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        alerts = re.findall(r"^\s*- alert: (\w+)", read(RULES), re.M)
        self.assertIn(f"SUCCESS: {len(alerts)} rules found", r.stdout)
        # The config names the rules where Debian's prometheus keeps them: point it at ours.
        config = read(PROMETHEUS_YML)
        self.assertIn("/etc/prometheus/spate-rules.yml", config)
        self.assertIn('"127.0.0.1:9464"', config, "spate's [metrics] listen")
        copy = os.path.join(self.dir, "prometheus.yml")
        with open(copy, "w") as f:
            f.write(config.replace("/etc/prometheus/spate-rules.yml", RULES))
        r = run([PROMTOOL, "check", "config", copy])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS: 1 rule files found", r.stdout)

    def test_the_production_config_passes_check_config_with_its_files_in_place(self):
        rsa, ed = os.path.join(self.dir, "rsa.pem"), os.path.join(self.dir, "ed25519.pem")
        run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
             "-out", rsa], check=True)
        run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", ed], check=True)
        users = os.path.join(self.dir, "users")
        r = run([harness.SPATE, "--hash-password", "campaign1"], input="a password\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(users, "w") as f:
            f.write(r.stdout)
        token = os.path.join(self.dir, "admin.token")
        with open(token, "w") as f:
            f.write("an admin token\n")
        paths = {
            "/etc/spate/admin.token": token,
            "/etc/spate/tls/fullchain.pem": os.path.join(DATA, "spate.test.crt"),
            "/etc/spate/tls/privkey.pem": os.path.join(DATA, "spate.test.key"),
            "/etc/spate/users": users,
            "/etc/spate/shaping.toml": os.path.join(DEPLOY, "shaping.toml"),
            "/etc/spate/dkim/example.com.rsa.pem": rsa,
            "/etc/spate/dkim/example.com.ed25519.pem": ed,
            "/var/lib/spate/spool": os.path.join(self.dir, "spool"),
            "/var/log/spate/records.jsonl": os.path.join(self.dir, "records.jsonl"),
        }
        text = read(PRODUCTION)
        for path, ours in paths.items():
            self.assertIn(f'"{path}"', text)
            text = text.replace(f'"{path}"', f'"{ours}"')
        config = os.path.join(self.dir, "spate.toml")
        with open(config, "w") as f:
            f.write(text)
        r = run([harness.SPATE, "--config", config, "--check-config"])
        self.assertEqual((r.returncode, r.stdout), (0, "configuration ok\n"), r.stderr)
        self.assertEqual(r.stderr, "", "no warnings either")
        # What the other files take for granted of it.
        self.assertIn('listen = "0.0.0.0:587"', text)
        self.assertIn('listen = "127.0.0.1:9464"', text, "where prometheus.yml scrapes")
        self.assertEqual(len(re.findall(r"^\[\[dkim\]\]", text, re.M)), 2)

    def test_the_systemd_unit_verifies(self):
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            self.skipTest("systemd-analyze is not installed")
        unit = read(UNIT)
        self.assertIn("ExecStart=/usr/local/bin/spate --config /etc/spate/spate.toml\n", unit)
        self.assertIn("ExecReload=/bin/kill -HUP $MAINPID\n", unit)
        for line in ("StateDirectory=spate", "LogsDirectory=spate", "User=spate",
                     "ReadWritePaths=/var/lib/spate /var/log/spate",
                     "AmbientCapabilities=CAP_NET_BIND_SERVICE", "LimitNOFILE=1048576"):
            self.assertRegex(unit, f"(?m)^{re.escape(line)}$")
        # verify wants the binary to exist: the one under test stands in for /usr/local/bin.
        copy = os.path.join(self.dir, "spate.service")
        with open(copy, "w") as f:
            f.write(unit.replace("/usr/local/bin/spate", os.path.abspath(harness.SPATE)))
        r = run([analyze, "verify", copy])
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))

    def test_the_haproxy_example_is_valid_and_checks_with_the_proxy_protocol(self):
        """deploy/haproxy/haproxy.cfg: haproxy -c accepts it; every server sends PROXY v2 and
        is health-checked over SMTP with its own header (what [server] proxy_protocol wants)."""
        path = os.path.join(DEPLOY, "haproxy", "haproxy.cfg")
        r = run(["haproxy", "-c", "-f", path])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        text = read(path)
        self.assertIn("option smtpchk", text)
        self.assertRegex(text, r"default-server send-proxy-v2 check check-send-proxy")

    def test_the_container_installs_what_spate_links_and_builds_with(self):
        if not shutil.which("dpkg") or not shutil.which("readelf"):
            self.skipTest("needs dpkg and readelf (Debian)")
        build, runtime = containerfile_stages()
        self.assertIn("debian:12", build)
        self.assertIn("cmake --preset release", build)
        self.assertIn("COPY --from=build /src/build/core/spate /usr/local/bin/spate", runtime)
        self.assertIn("COPY deploy/spate.production.toml /etc/spate/spate.toml", runtime)
        self.assertRegex(runtime, r"(?m)^EXPOSE 25 587 9464$")
        self.assertRegex(runtime, r"(?m)^STOPSIGNAL SIGTERM$")
        # Every library the binary needs comes from a package the runtime stage installs (but
        # libc6 and libgcc-s1, in every Debian image).
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                            run(["readelf", "-d", harness.SPATE]).stdout)
        found = dict(re.findall(r"^\s*(\S+) => (/\S+)", run(["ldd", harness.SPATE]).stdout,
                                re.M))
        self.assertTrue(needed)
        words = set(re.findall(r"[\w.+-]+", runtime))
        missing = []
        for soname in needed:
            real = os.path.realpath(found[soname])
            candidates = [real, found[soname], real.replace("/usr/lib/", "/lib/", 1)]
            owner = None
            for c in candidates:
                r = run(["dpkg", "-S", c])
                if r.returncode == 0:
                    owner = r.stdout.split(":")[0]
                    break
            self.assertIsNotNone(owner, f"no package owns {soname}")
            if owner not in ("libc6", "libgcc-s1") and owner not in words:
                missing.append(f"{soname} ({owner})")
        self.assertEqual(missing, [], "libraries spate links that the runtime stage lacks")
        # Every library the build uses (deploy/install-deps.sh's -dev packages, but the fuzz
        # runtime) is in the build stage.
        deps = re.findall(r"[\w.+-]+-dev\b", read(os.path.join(DEPLOY, "install-deps.sh")))
        build_words = set(re.findall(r"[\w.+-]+", build))
        self.assertEqual([d for d in deps if d not in build_words and "clang" not in d], [])

    def test_the_dashboard_and_its_provisioning_are_well_formed(self):
        d = json.loads(read(DASHBOARD))
        self.assertGreaterEqual(d["schemaVersion"], 36)
        variables = {v["name"]: v for v in d["templating"]["list"]}
        self.assertEqual((variables["datasource"]["type"], variables["datasource"]["query"]),
                         ("datasource", "prometheus"))
        domain = variables["domain"]
        self.assertEqual(domain["query"]["query"], "label_values(spate_deliveries_total, domain)")
        self.assertTrue(domain["includeAll"] and domain["multi"])
        self.assertEqual(domain["allValue"], ".*")
        ids, boxes = set(), []
        for p in d["panels"]:
            self.assertNotIn(p["id"], ids, "panel ids are unique")
            ids.add(p["id"])
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            for (x, y, w, h, title) in boxes:
                overlap = (g["x"] < x + w and x < g["x"] + g["w"] and
                           g["y"] < y + h and y < g["y"] + g["h"])
                self.assertFalse(overlap, f"{p['title']} overlaps {title}")
            boxes.append((g["x"], g["y"], g["w"], g["h"], p["title"]))
            if p["type"] == "row":
                continue
            self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
            self.assertTrue(p["targets"], p["title"])
            for t in p["targets"]:
                self.assertTrue(t["expr"], p["title"])
                self.assertEqual(t["datasource"]["uid"], "${datasource}", p["title"])
        exprs = " ".join(e for _, _, e in dashboard_targets(d))
        for metric in ("spate_deliveries_total", "spate_deferrals_total", "spate_bounces_total",
                       "spate_queue_recipients", "spate_queue_oldest_age_seconds",
                       "spate_messages_received_total", "spate_accept_latency_seconds_bucket",
                       "spate_delivery_latency_seconds_bucket",
                       "spate_spool_commit_seconds_total", "spate_spool_commit_batches_total",
                       "spate_inbound_connections", "spate_site_outbound_connections",
                       "spate_outbound_tls_sessions_total", "spate_suppressed_total",
                       "spate_suppression_entries", "spate_automation_active",
                       "spate_site_suspended", "spate_dkim_signed_total", "spate_spool_state",
                       "spate_spool_free_bytes"):
            self.assertRegex(exprs, rf"\b{metric}\b", "a panel shows it")
        provider = read(os.path.join(DEPLOY, "grafana", "provisioning", "dashboards",
                                     "spate.yaml"))
        self.assertRegex(provider, r"(?m)^\s+type: file$")
        self.assertRegex(provider, r"(?m)^\s+path: /\S+$")
        source = read(os.path.join(DEPLOY, "grafana", "provisioning", "datasources",
                                   "spate.yaml"))
        self.assertRegex(source, r"(?m)^\s+type: prometheus$")


class SpateSink:
    """spate-sink on a loopback port (it binds port 0 and writes the port it got)."""

    def __init__(self, workdir, name, *flags):
        port_file = os.path.join(workdir, f"{name}.port")
        self.log = open(os.path.join(workdir, f"{name}.log"), "wb")
        self.proc = subprocess.Popen(
            [SINK, "--listen", "127.0.0.1:0", "--port-file", port_file, "--duration", "600",
             *flags], stdout=self.log, stderr=self.log)
        harness.wait_for(lambda: os.path.exists(port_file) or self.proc.poll() is not None,
                         10, f"spate-sink {name}'s port file")
        if self.proc.poll() is not None:
            raise AssertionError(f"spate-sink {name} exited {self.proc.returncode}")
        with open(port_file) as f:
            self.port = int(f.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def message(n, subject="message", froms=(SENDER,)):
    head = "".join(f"From: {f}\r\n" for f in froms)
    return f"{head}Subject: {subject} {n}\r\n\r\nbody {n}\r\n".encode()


def submit(port, rcpt, body):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        refused = smtp.sendmail(SENDER, [rcpt], body)
        assert not refused, refused


class Traffic(threading.Thread):
    """Steady mail while Prometheus scrapes, so that every rate has two points that differ: a
    message to ok.test every 0.2 s, one to tls.test every second, and BOUNCES to bounce.test."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop_event = threading.Event()
        self.errors = []
        self.bounces_sent = 0

    def run(self):
        n = 0
        smtp = None
        while not self.stop_event.is_set():
            rcpts = [f"ok{n}@ok.test"]
            if n % 5 == 0:
                rcpts.append(f"ok{n}@tls.test")
            if self.bounces_sent < BOUNCES:
                rcpts.append(f"unknown{self.bounces_sent}@bounce.test")
            try:
                if smtp is None:
                    smtp = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
                    smtp.ehlo("client.test")
                for rcpt in rcpts:
                    refused = smtp.sendmail(SENDER, [rcpt], message(n))
                    assert not refused, refused
                    if rcpt.endswith("@bounce.test"):
                        self.bounces_sent += 1
            except (smtplib.SMTPException, OSError, AssertionError) as e:
                self.errors.append(repr(e))
                smtp = None
            n += 1
            self.stop_event.wait(0.2)
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass

    def stop(self):
        self.stop_event.set()
        self.join(30)


class DashboardOnPrometheus(unittest.TestCase):
    """One spate, its destinations and a real Prometheus for every test of this class: the
    queries are checked against the same scraped history."""

    @classmethod
    def setUpClass(cls):
        installed(PROMETHEUS)
        installed(PROMTOOL)
        cls.dir = harness.tempdir()
        cls.spate = cls.prometheus = cls.traffic = None
        cls.sinks = []
        cls.tls = tls_sink.TlsSink(mode="starttls")
        try:
            cls._start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _start(cls):
        d = cls.dir
        ok = SpateSink(d, "ok")
        ts01 = SpateSink(d, "ts01", "--first-421", "1", "--text-421", "4.7.0 [TS01] x")
        cls.sinks += [ok, ts01]
        ed = os.path.join(d, "ed25519.pem")
        run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", ed], check=True)
        shaping = os.path.join(d, "shaping.toml")
        with open(shaping, "w") as f:
            f.write(SHAPING)
        # origin.test takes the DSNs of the bounces.
        routes = {"ok.test": ok.port, "origin.test": ok.port, "tls.test": cls.tls.port,
                  "bounce.test": cls.tls.port, "ts01.test": ts01.port}
        cls.spate = harness.Spate(
            d, routes, log_deliveries=True, delivery={"shaping": shaping},
            extra=f'\n[[dkim]]\ndomain = "origin.test"\nselector = "s1"\nkey = "{ed}"\n')
        cls.spate.start()

        # Prometheus first, so that its first samples come before the traffic: every counter
        # then rises between two of its samples.
        prom_dir = os.path.join(d, "prometheus")
        os.makedirs(prom_dir)
        config = os.path.join(prom_dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES}
scrape_configs:
  - job_name: spate
    static_configs:
      - targets: ["127.0.0.1:{cls.spate.metrics_port}"]
""")
        log_path = os.path.join(prom_dir, "prometheus.log")

        def launch(port):
            with open(log_path, "wb") as log:
                return subprocess.Popen(
                    [PROMETHEUS, f"--config.file={config}",
                     f"--storage.tsdb.path={os.path.join(prom_dir, 'tsdb')}",
                     f"--web.listen-address=127.0.0.1:{port}",
                     "--storage.tsdb.retention.time=1h"],
                    stdout=subprocess.DEVNULL, stderr=log)

        cls.prometheus, cls.prom_port = harness.start_on_a_free_port(
            launch, "prometheus", log_path, timeout=30)
        harness.wait_for(lambda: cls._ready(), 30, "prometheus /-/ready")
        harness.wait_for(lambda: cls._values('up{job="spate"}') == [1.0], 30,
                         "prometheus to scrape spate (up == 1)")

        port = cls.spate.smtp_port
        # Over STARTTLS: deliveries, a bounce (550 5.1.1: suppressed), a deferral (451, retried
        # on and on); in the clear, to spate-sink: the 421 [TS01] that suspends ts01.test.
        for n in range(3):
            submit(port, f"ok{n}@tls.test", message(n))
        submit(port, "unknown@tls.test", message(0))
        submit(port, "busy@tls.test", message(0))
        for n in range(3):
            submit(port, f"t{n}@ts01.test", message(n))
        # Two From: headers: it cannot be signed, goes unsigned, and is counted.
        submit(port, "twofrom@ok.test", message(0, froms=(SENDER, "other@origin.test")))
        harness.wait_for(lambda: cls.spate.metric("spate_suppression_entries") >= 1, 30,
                         "unknown@tls.test on the suppression list")
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo("client.test")
            try:
                smtp.sendmail(SENDER, ["unknown@tls.test"], message(1))
                raise AssertionError("a suppressed recipient was accepted")
            except smtplib.SMTPRecipientsRefused as e:
                cls.suppressed_reply = e.recipients["unknown@tls.test"]
        harness.wait_for(lambda: cls.spate.metric("spate_site_suspended", site="ts01.test") == 1,
                         30, "ts01.test suspended by its [TS01] rule")
        cls.traffic = Traffic(port)
        cls.traffic.start()
        harness.wait_for(lambda: cls.traffic.bounces_sent >= BOUNCES, 60,
                         f"{BOUNCES} messages to bounce.test submitted")
        harness.wait_for(
            lambda: cls.spate.metric("spate_bounces_total", domain="bounce.test") >= BOUNCES,
            60, f"{BOUNCES} bounces from bounce.test")
        # Every series scraped a few times since: rate() over 5 s has points that differ.
        harness.wait_for(
            lambda: cls._values(f'sum(spate_bounces_total{{domain="bounce.test"}}) >= {BOUNCES}')
            and cls._values("count_over_time(spate_shards[10s]) >= 6"),
            30, "the bounces and 6 scrapes in Prometheus")
        # And two more scrapes of the steady traffic after them, for the 5 s rates.
        seen = time.time()
        harness.wait_for(lambda: (cls._values("timestamp(spate_shards)") or [0])[0] > seen + 2,
                         30, "two more scrapes")

    @classmethod
    def tearDownClass(cls):
        if cls.traffic:
            cls.traffic.stop()
        if cls.prometheus and cls.prometheus.poll() is None:
            cls.prometheus.send_signal(signal.SIGTERM)
            try:
                cls.prometheus.wait(30)
            except subprocess.TimeoutExpired:
                cls.prometheus.kill()
                cls.prometheus.wait(10)
        if cls.spate:
            cls.spate.stop()
        for s in cls.sinks:
            s.stop()
        cls.tls.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def _api(cls, path, **params):
        url = f"http://127.0.0.1:{cls.prom_port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:  # a bad query: 400 with the error in JSON
            return json.load(e)

    @classmethod
    def _ready(cls):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{cls.prom_port}/-/ready",
                                        timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    @classmethod
    def _values(cls, expr):
        body = cls._api("/api/v1/query", query=expr)
        if body.get("status") != "success":
            return None
        return [float(s["value"][1]) for s in body["data"]["result"]]

    def test_every_dashboard_query_succeeds_and_has_data(self):
        targets = dashboard_targets(json.loads(read(DASHBOARD)))
        self.assertGreater(len(targets), 20)
        failed = []
        for title, ref, expr in targets:
            query = substitute(expr)
            self.assertNotIn("$", query, "every variable filled in")
            body = self._api("/api/v1/query", query=query)
            if body.get("status") != "success":
                failed.append(f"{title} [{ref}] {query}: {body.get('error')}")
            elif not body["data"]["result"]:
                failed.append(f"{title} [{ref}] {query}: no data")
        self.assertEqual(failed, [], "\n".join(["panels without data:"] + failed))

    def test_the_domain_variable_lists_the_destination_domains(self):
        body = self._api("/api/v1/label/domain/values", **{"match[]": "spate_deliveries_total"})
        self.assertEqual(body["status"], "success")
        for domain in ("ok.test", "tls.test", "bounce.test"):
            self.assertIn(domain, body["data"])

    def test_every_alert_rule_loads_evaluates_and_its_query_runs(self):
        alerts = re.findall(r"^\s*- alert: (\w+)", read(RULES), re.M)

        def rules():
            body = self._api("/api/v1/rules")
            got = [r for g in body["data"]["groups"] for r in g["rules"]]
            return got if got and all(r.get("health") != "unknown" for r in got) else None
        loaded = harness.wait_for(rules, 30, "every rule evaluated once")
        self.assertEqual(sorted(r["name"] for r in loaded), sorted(alerts))
        for r in loaded:
            self.assertEqual((r["name"], r["health"], r.get("lastError", "")),
                             (r["name"], "ok", ""))
            body = self._api("/api/v1/query", query=r["query"])
            self.assertEqual(body.get("status"), "success", f"{r['name']}: {body.get('error')}")

    def test_the_bounce_spike_goes_pending_and_the_dkim_failure_fires(self):
        def state():
            got = {}
            for a in self._api("/api/v1/alerts")["data"]["alerts"]:
                got[(a["labels"]["alertname"], a["labels"].get("domain"))] = a["state"]
            return got
        got = harness.wait_for(
            lambda: (lambda s: s if ("SpateBounceRateHigh", "bounce.test") in s and
                     ("SpateDkimFailures", None) in s else None)(state()),
            30, "the bounce-rate and DKIM alerts")
        # 10 minutes of "for" are not over: pending. The DKIM rule has none.
        self.assertEqual(got[("SpateBounceRateHigh", "bounce.test")], "pending")
        self.assertEqual(got[("SpateDkimFailures", None)], "firing")
        # Nothing else: ok.test delivers everything, tls.test bounced one of its messages. (The
        # disk alert is about the test machine's disk, not spate.)
        self.assertEqual(sorted(k for k in got if k[0] == "SpateBounceRateHigh"),
                         [("SpateBounceRateHigh", "bounce.test")])
        others = sorted(k[0] for k in got if k[0] not in (
            "SpateBounceRateHigh", "SpateDkimFailures", "SpateSpoolDiskLow"))
        self.assertEqual(others, [])

    def test_the_traffic_did_what_the_panels_show(self):
        # The preconditions of the data the panels show, from spate itself.
        code, text = self.suppressed_reply
        self.assertEqual(code, 550)
        self.assertIn(b"suppressed", text)
        self.assertEqual(self.traffic.errors, [])
        self.assertGreaterEqual(self.spate.metric("spate_dkim_signed_total",
                                                  domain="origin.test",
                                                  algorithm="ed25519-sha256"), 1)
        self.assertGreaterEqual(self.spate.metric("spate_dkim_failures_total"), 1)
        self.assertEqual(self.spate.metric("spate_automation_active", site="ts01.test",
                                           rule="ts01.test:3"), 1)
        self.assertGreaterEqual(self.spate.metric("spate_deliveries_total", domain="tls.test",
                                                  outcome="deferred"), 1)
        self.assertGreaterEqual(self.spate.metric("spate_outbound_tls_sessions_total"), 1)
        self.assertIn("ok0@tls.test", self.tls.rcpts())
        self.assertIsNotNone(self.tls.tls_of("ok0@tls.test"), "delivered over STARTTLS")

    def test_promtool_check_metrics_passes_spates_metrics(self):
        text = self.spate.metrics()
        r = run([PROMTOOL, "check", "metrics"], input=text)
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""),
                         "promtool's lint of /metrics")


if __name__ == "__main__":
    unittest.main()
