#!/usr/bin/env python3
"""spate end-to-end benchmark driver (run it through bench/run-e2e.sh or `make bench`).

One run: spate-sink on a loopback port, then the MTA under test (spate with a real durable
spool in a temporary directory, or Postfix 3.7 from Debian with its queue in a temporary
directory, both relaying every destination domain to the sink), then spate-blast into its
submission port. It waits until the sink holds every accepted message, reads the MTA's CPU
time and peak RSS from /proc, and prints one JSON summary. The same load also goes straight
from spate-blast to spate-sink ("direct"), to show the instruments are not the limit. Target
"spate-mx" is spate routing by MX records instead of static routes: a DNS server on loopback
(tests/dns/dnsserver.py, python3-dnslib) gives domain d<i> the MX host mx<i % 10>, so the
domains roll up into 10 sites, each of whose MX names resolves to the sink's 127.0.0.1.

Everything is on loopback, every load is bounded in messages and in time, and every process
this script starts is stopped by it (by pid) before it returns.

Python standard library only.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"run-e2e: {msg}", file=sys.stderr, flush=True)


def wait_for(predicate, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


PORT_ATTEMPTS = 20


def free_port():
    """A port that was free a moment ago: a candidate only, another process may take it first
    (start servers that can on port 0 instead; Postfix retries, see PostfixMta)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_pids(port):
    """The processes holding a TCP socket that listens on `port` (/proc/net/tcp, /proc/*/fd)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.read().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    pids.add(int(pid))
                    break
            except OSError:
                continue
    return pids


def proc_cpu_seconds(pid, children=False):
    """utime + stime of a process (and, with children=True, of its reaped children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def proc_status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(d))
        except OSError:
            pass
    return out


def machine_cpu():
    """(busy, total) jiffies of every CPU since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v) - idle, sum(v)


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Proc:
    """A child process whose stdout goes to a file; stopped by pid."""

    def __init__(self, args, stdout_path, stderr_path=None, env=None):
        self.args = args
        self.stdout_path = stdout_path
        self.stdout = open(stdout_path, "wb")
        self.stderr = open(stderr_path, "wb") if stderr_path else None
        self.p = subprocess.Popen(args, stdout=self.stdout,
                                  stderr=self.stderr if self.stderr else None, env=env)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stop(self, timeout=30):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self.stdout.close()
        if self.stderr:
            self.stderr.close()
        return self.p.returncode


class Sink:
    def __init__(self, bins, workdir, threads, extra=()):
        self.stats = os.path.join(workdir, "sink-stats.json")
        self.json = os.path.join(workdir, "sink.json")
        port_file = os.path.join(workdir, "sink.port")
        args = [bins["sink"], "--listen", "127.0.0.1:0", "--threads", str(threads),
                "--stats-file", self.stats, "--json", self.json, "--port-file", port_file,
                "--duration", "3600", *extra]
        self.proc = Proc(args, os.path.join(workdir, "sink.out"),
                         os.path.join(workdir, "sink.err"))
        wait_for(lambda: os.path.exists(port_file) or not self.proc.alive(), 10, "spate-sink")
        if not self.proc.alive():
            raise RuntimeError("spate-sink exited: " + open(self.proc.stderr.name).read())
        with open(port_file) as f:
            self.port = int(f.read())

    def received(self):
        try:
            with open(self.stats) as f:
                return json.load(f)["recipients"]
        except (OSError, ValueError, KeyError):
            return 0

    def finish(self):
        self.proc.stop()
        with open(self.json) as f:
            return json.load(f)


MX_SITES = 10  # spate-mx: the domains share this many MX hosts (sites)


class DnsServer:
    """tests/dns/dnsserver.py on a free loopback port, answering the MX run's zone."""

    def __init__(self, workdir, p):
        records = []
        for i in range(p.domains):
            records.append([f"d{i}.{p.domain_suffix}.", "MX", 3600,
                            f"10 mx{i % MX_SITES}.{p.domain_suffix}."])
        for k in range(MX_SITES):
            records.append([f"mx{k}.{p.domain_suffix}.", "A", 3600, "127.0.0.1"])
        zone = os.path.join(workdir, "zone.json")
        with open(zone, "w") as f:
            json.dump({"records": records}, f)
        out = os.path.join(workdir, "dns.out")
        self.proc = Proc(["/usr/bin/python3", os.path.join(REPO, "tests", "dns", "dnsserver.py"),
                          zone], out)

        def port():
            if not self.proc.alive():
                raise RuntimeError("the DNS server exited: " + open(out).read())
            m = re.search(r"^port=(\d+)", open(out).read(), re.M)
            return m and int(m.group(1))
        self.port = wait_for(port, 10, "the DNS server")


class SpateMta:
    name = "spate"

    def __init__(self, bins, workdir, sink_port, p, dns_port=None):
        self.workdir = workdir
        self.spool = os.path.join(workdir, "spool")
        self.config = os.path.join(workdir, "spate.toml")
        routes = "\n".join(f'"d{i}.{p.domain_suffix}" = "127.0.0.1:{sink_port}"'
                           for i in range(p.domains))
        mx = ""
        if dns_port is not None:
            # By MX: no static route; loopback may be an MX; the DNS server is the only one.
            routes = ""
            mx = (f"mx_port = {sink_port}\nprohibited_networks = []\n"
                  f'[dns]\nnameservers = ["127.0.0.1:{dns_port}"]\n')
        # Every load connection comes from 127.0.0.1: lift the per-client cap where this spate
        # has one (its default would refuse connections past it with 421).
        defaults = subprocess.run([bins["spate"], "--print-default-config"], capture_output=True,
                                  text=True).stdout
        server_extra = ""
        if re.search(r"^max_connections_per_client\s*=", defaults, re.M):
            server_extra += "max_connections_per_client = 0\n"
        if re.search(r"^max_connections\s*=", defaults.split("[delivery]")[0], re.M):
            server_extra += f"max_connections = {max(10000, 2 * p.connections)}\n"
        # The accounting records (on by default, as shipped) go beside the spool; --no-records
        # turns them off. Written only by spates that know the key.
        records = ""
        if re.search(r"^records\s*=", defaults, re.M):
            path = os.path.join(workdir, "records.jsonl") if p.records else ""
            records = f'records = "{path}"\n'
        # No admin API (its default port would be shared by the runs); spates that know it.
        if re.search(r"^\[admin\]", defaults, re.M):
            records += '[admin]\nlisten = ""\n'
        # DKIM signing (issue 12) of spate-blast's From: domain, with a key made for the run.
        dkim = ""
        if getattr(p, "dkim", "none") != "none":
            key = os.path.join(workdir, f"dkim-{p.dkim}.pem")
            gen = (["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
                   if p.dkim == "rsa" else ["openssl", "genpkey", "-algorithm", "ED25519"])
            subprocess.run(gen + ["-out", key], check=True, capture_output=True)
            dkim = (f'[[dkim]]\ndomain = "spate-bench.test"\nselector = "bench"\n'
                    f'key = "{key}"\n')
        # --cluster: the node shares its limits in a Redis of its own (issue 15), so that the run
        # measures what the Redis round trips cost (a lease per connection opened here: the
        # sites have no rate).
        self.redis = None
        if getattr(p, "cluster", False):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                redis_port = s.getsockname()[1]
            self.redis = Proc(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no"],
                              os.path.join(workdir, "redis.log"))
            wait_for(lambda: _can_connect(redis_port), 10, "redis-server")
            dkim += f'[cluster]\nredis = "127.0.0.1:{redis_port}"\nnode = "bench"\n'
        with open(self.config, "w") as f:
            f.write(f"""# generated by bench/e2e.py
[server]
listen = "127.0.0.1:0"
hostname = "spate.bench.test"
max_recipients = {max(100, p.rcpts)}
{server_extra}[spool]
path = "{self.spool}"
sync = {"true" if p.sync else "false"}
[metrics]
listen = "127.0.0.1:0"
[shards]
count = {p.shards}
[delivery]
max_connections = {p.spate_max_connections}
retry_base = "1s"
retry_max = "5s"
{mx}[routes]
{routes}
[log]
deliveries = false
{records}{dkim}""")
        self.log_path = os.path.join(workdir, "spate.log")
        self.proc = Proc([bins["spate"], "--config", self.config], self.log_path,
                         os.path.join(workdir, "spate.err"))

        def ready():
            if not self.proc.alive():
                raise RuntimeError("spate exited: " + open(self.proc.stderr.name).read())
            with open(self.proc.stderr.name, errors="replace") as f:
                m = re.search(r"spate ready:.*smtp=127\.0\.0\.1:(\d+).*metrics=127\.0\.0\.1:(\d+)",
                              f.read())
            return m
        m = wait_for(ready, 30, "spate ready line")
        self.smtp_port = int(m.group(1))
        self.metrics_port = int(m.group(2))

    def cpu_seconds(self):
        return proc_cpu_seconds(self.proc.pid)

    def peak_rss_kb(self):
        return proc_status_kb(self.proc.pid, "VmHWM")

    def metric(self, name, label=""):
        """The sum of the samples of `name` (whose labels contain `label`)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            m = re.match(r"^([a-z_]+)(\{[^}]*\})?\s+(\S+)$", line)
            if m and m.group(1) == name and label in (m.group(2) or ""):
                total += float(m.group(3))
        return total

    def delivered(self):
        return int(self.metric("spate_deliveries_total", 'outcome="delivered"'))

    def spool_stats(self):
        """Group commit: how many synced batches, their average size and duration."""
        batches = self.metric("spate_spool_commit_batches_total")
        committed = self.metric("spate_spool_messages_committed_total")
        seconds = self.metric("spate_spool_commit_seconds_total")
        return {"commit_batches": int(batches),
                "messages_per_batch": round(committed / batches, 1) if batches else 0,
                "commit_ms_per_batch": round(seconds / batches * 1000, 3) if batches else 0}

    def stop(self):
        rc = self.proc.stop(60)
        if self.redis:
            self.redis.stop()
        return rc


def _can_connect(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class PostfixMta:
    """Postfix from Debian's package on an alternate config and queue directory."""
    name = "postfix"

    def __init__(self, bins, workdir, sink_port, p):
        ensure_postfix()
        self.dir = os.path.join(workdir, "postfix")
        self.conf = os.path.join(self.dir, "etc")
        self.started = False
        queue = self.queue = os.path.join(self.dir, "queue")
        data = os.path.join(self.dir, "data")
        for d in (self.conf, queue, data):
            os.makedirs(d)
        # The postfix user must reach its queue: open the path to it (mkdtemp made it 0700).
        for d in (workdir, self.dir):
            os.chmod(d, 0o755)
        shutil.chown(data, "postfix", "postfix")
        self.log_path = os.path.join(self.dir, "maillog")
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(f"""# generated by bench/e2e.py: loopback only, relays everything to the sink
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = $myhostname
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
local_transport = error:local delivery is disabled
relayhost = [127.0.0.1]:{sink_port}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
smtputf8_enable = no
biff = no
maillog_file_prefixes = {self.dir}
maillog_file = {self.log_path}
default_process_limit = {max(100, p.connections + 50)}
default_destination_concurrency_limit = {p.postfix_concurrency}
smtpd_client_connection_count_limit = 0
message_size_limit = {max(10240000, 2 * p.max_size)}
""")
        # Postfix cannot listen on port 0 and say which port it got: pick a candidate, start,
        # and check that its own master holds the listener; when another process took the port
        # first (smtpd's bind fails, or someone else answers there), try the next one.
        for _ in range(PORT_ATTEMPTS):
            self.smtp_port = free_port()
            self._write_master_cf()
            if self._start():
                break
        else:
            raise RuntimeError(f"postfix: {PORT_ATTEMPTS} candidate ports in a row were taken")

    def _write_master_cf(self):
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(f"""# generated by bench/e2e.py: no chroot, smtpd on a loopback port
127.0.0.1:{self.smtp_port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""")

    def _start(self):
        """Starts Postfix on self.smtp_port: True once its master listens there, False when the
        port was taken first (Postfix is stopped again), an exception on any other failure."""
        log_from = len(self._maillog())  # this start's lines only

        def port_taken():
            return "in use" in self._maillog()[log_from:]

        r = subprocess.run(["postfix", "-c", self.conf, "start"], capture_output=True, text=True)
        if r.returncode != 0:
            if "in use" in r.stdout + r.stderr or port_taken():
                return False
            raise RuntimeError(f"postfix start failed: {r.stdout}{r.stderr}")
        pid_file = os.path.join(self.queue, "pid", "master.pid")
        wait_for(lambda: os.path.exists(pid_file), 20, "postfix master.pid")
        with open(pid_file) as f:
            self.master = int(f.read())
        self.started = True
        wait_for(lambda: self.master in listening_pids(self.smtp_port) or port_taken()
                 or not os.path.exists(f"/proc/{self.master}"), 30, "postfix smtpd listening")
        if self.master not in listening_pids(self.smtp_port):
            self.stop()
            if port_taken():
                return False
            raise RuntimeError(f"postfix did not listen on {self.smtp_port}: "
                               f"{self._maillog()[log_from:]}")
        return True

    def _maillog(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _processes(self):
        return [self.master] + children_of(self.master)

    def cpu_seconds(self):
        """master's own and reaped children's time, plus every live child's."""
        total = proc_cpu_seconds(self.master, children=True)
        for pid in children_of(self.master):
            try:
                total += proc_cpu_seconds(pid)
            except OSError:
                pass
        return total

    def peak_rss_kb(self):
        """The sum of VmHWM over the master and its live children (each its own peak)."""
        total = 0
        for pid in self._processes():
            try:
                total += proc_status_kb(pid, "VmHWM")
            except OSError:
                pass
        return total

    def stop(self):
        if self.started:
            subprocess.run(["postfix", "-c", self.conf, "stop"], capture_output=True)
            try:
                wait_for(lambda: not os.path.exists(f"/proc/{self.master}"), 30, "postfix stop")
            except TimeoutError:
                subprocess.run(["postfix", "-c", self.conf, "abort"], capture_output=True)
            self.started = False


def start_perf(mta, outdir, target):
    """perf record (cpu-clock: this VM has no hardware counters) of the MTA while it works."""
    if not shutil.which("perf"):
        log("--profile: perf not found (apt-get install linux-perf)")
        return None
    data = os.path.join(outdir, f"{target}-perf.data")
    proc = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "499",
                             "--call-graph", "dwarf,16384", "-p", str(mta.proc.pid), "-o", data],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches to every thread before the load starts
    return proc, data


def finish_perf(perf, outdir, target, keep):
    """Text reports of the recording: flat (self time), inclusive (with callees) and callers
    of the hottest symbols. The recording itself is deleted unless --keep."""
    proc, data = perf
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    reports = {
        "flat": ["--no-children", "--sort", "dso,symbol", "-g", "none", "--percent-limit", "0.3"],
        "inclusive": ["--children", "--sort", "symbol", "-g", "none", "--percent-limit", "1.5"],
        "callers": ["--no-children", "--sort", "symbol", "-g", "caller,0.5,callee,function,percent",
                    "--percent-limit", "3"],
        "threads": ["--no-children", "--sort", "pid", "-g", "none"],
    }
    for name, args in reports.items():
        out = os.path.join(outdir, f"{target}-perf-{name}.txt")
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", *args],
                           capture_output=True, text=True)
        with open(out, "w") as f:
            # Inlined template names make lines of kilobytes: the start says enough.
            f.write("\n".join(line.rstrip()[:200] for line in r.stdout.splitlines()) + "\n")
        log(f"profile: {out}")
    if not keep:
        os.remove(data)


def ensure_postfix():
    if shutil.which("postfix") or os.path.exists("/usr/sbin/postfix"):
        return
    log("installing postfix from Debian's package")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["debconf-set-selections"], input=b"postfix postfix/main_mailer_type select "
                   b"No configuration\n", check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postfix"],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def blast_args(bins, port, p, out_json, messages, rate=0.0):
    args = [bins["blast"], "--server", f"127.0.0.1:{port}", "--connections", str(p.connections),
            "--messages", str(messages), "--rcpts", str(p.rcpts), "--domains", str(p.domains),
            "--domain-suffix", p.domain_suffix, "--threads", str(p.blast_threads),
            "--timeout", str(p.timeout), "--json", out_json]
    if p.size_mix:
        args += ["--size-mix", p.size_mix]
    else:
        args += ["--size", str(p.size)]
    if rate:
        args += ["--rate", str(rate)]
    if not p.progress:
        args += ["--no-progress"]
    return args


def run_target(target, bins, p, outdir, messages, rate=0.0):
    """One measured run; returns its summary dict. Raw JSON files stay in `outdir`."""
    work = tempfile.mkdtemp(prefix=f"spate-bench-{target}-", dir=p.tmpdir)
    sink = mta = dns = None
    try:
        sink = Sink(bins, work, p.sink_threads)
        if target == "spate":
            mta = SpateMta(bins, work, sink.port, p)
        elif target == "spate-mx":
            dns = DnsServer(work, p)
            mta = SpateMta(bins, work, sink.port, p, dns_port=dns.port)
        elif target == "postfix":
            mta = PostfixMta(bins, work, sink.port, p)
        port = mta.smtp_port if mta else sink.port
        cpu0 = mta.cpu_seconds() if mta else 0.0
        perf = start_perf(mta, outdir, target) if p.profile and isinstance(mta, SpateMta) \
            else None
        warm = p.warm_up if mta else 0
        if warm:
            # Untimed: one message per domain (spate-blast goes round the domains), delivered
            # before the measured run, so that routes are cached and pools are open, as they
            # are on an MTA that has been running.
            log(f"{target}: warm-up, {warm} messages")
            warm_json = os.path.join(work, "warm-blast.json")
            subprocess.run(blast_args(bins, port, p, warm_json, warm), stdout=subprocess.DEVNULL)
            with open(warm_json) as f:
                warm = json.load(f)["messages_accepted"] * p.rcpts
            wait_for(lambda: sink.received() >= warm, p.timeout, f"{warm} warm-up deliveries",
                     interval=0.1)
        blast_json = os.path.join(outdir, f"{target}-blast.json")
        log(f"{target}: {messages} messages of {p.size_mix or p.size} octets, "
            f"{p.connections} connections" + (f", rate {rate:.0f}/s" if rate else ""))
        busy0, total0 = machine_cpu()
        sink_cpu0 = proc_cpu_seconds(sink.proc.pid)
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run(blast_args(bins, port, p, blast_json, messages, rate),
                           stdout=subprocess.DEVNULL)
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        blast_cpu = (children1.ru_utime - children0.ru_utime +
                     children1.ru_stime - children0.ru_stime)
        with open(blast_json) as f:
            blast = json.load(f)
        if r.returncode not in (0,):
            log(f"{target}: spate-blast exited {r.returncode}")
        expected = blast["messages_accepted"] * p.rcpts + warm
        t0 = time.monotonic()
        try:
            wait_for(lambda: sink.received() >= expected, p.timeout, f"{expected} deliveries",
                     interval=0.1)
        except TimeoutError as e:
            log(f"{target}: {e}")
        drain_s = time.monotonic() - t0
        busy1, total1 = machine_cpu()
        sink_cpu = proc_cpu_seconds(sink.proc.pid) - sink_cpu0
        if perf:
            finish_perf(perf, outdir, target, p.keep)
        cpu = (mta.cpu_seconds() - cpu0) if mta else None
        # CPU time of everything else on the machine meanwhile (other users' builds, fuzzers):
        # the noise in this measurement.
        ncpu = os.cpu_count() or 1
        window_s = (total1 - total0) / CLK_TCK / ncpu
        others = (busy1 - busy0) / CLK_TCK - (cpu or 0) - blast_cpu - sink_cpu
        rss = mta.peak_rss_kb() if mta else None
        spate_delivered = mta.delivered() if isinstance(mta, SpateMta) else None
        spool = mta.spool_stats() if isinstance(mta, SpateMta) else None
        if mta:
            mta.stop()
            mta = None
        sink_json = sink.finish()
        sink = None
        with open(os.path.join(outdir, f"{target}-sink.json"), "w") as f:
            json.dump(sink_json, f)
        delivered = sink_json["recipients"] - warm
        span_ns = sink_json["last_message_ns"] - blast["first_accept_ns"]
        e2e = delivered / (span_ns / 1e9) if span_ns > 0 and delivered else 0.0
        summary = {
            "target": target,
            "messages_sent": messages,
            "messages_accepted": blast["messages_accepted"],
            "deliveries_expected": expected - warm,
            "warm_up_deliveries": warm,
            "deliveries_received": delivered,
            "complete": delivered >= expected - warm,
            "e2e_msgs_per_s": round(e2e, 1),
            "accept_msgs_per_s": round(blast["msgs_per_s"], 1),
            "accept_latency_ms": blast["accept_latency_ms"],
            "e2e_latency_ms": sink_json["e2e_latency_ms"],
            "drain_after_blast_s": round(drain_s, 2),
            "errors": blast["errors"],
            # Context: how busy the whole machine was from the blast's start to the last
            # delivery (100% = every core), and what the instruments themselves used.
            "machine_cpu_busy_pct": round(100.0 * (busy1 - busy0) / max(total1 - total0, 1), 1),
            "other_processes_cores": round(max(others, 0) / max(window_s, 1e-9), 2),
            "blast_cpu_s_per_1000_msgs": round(blast_cpu / max(messages, 1) * 1000, 4),
            "sink_cpu_s_per_1000_msgs": round(sink_cpu / max(delivered, 1) * 1000, 4),
        }
        if cpu is not None:
            summary["cpu_s_per_1000_msgs"] = round(cpu / max(delivered, 1) * 1000, 4)
            summary["cpu_s"] = round(cpu, 2)
            summary["peak_rss_mb"] = round(rss / 1024, 1)
        if spate_delivered is not None:
            summary["spate_deliveries_total_delivered"] = spate_delivered
            summary["spool"] = spool
        return summary
    finally:
        if mta:
            mta.stop()
        if sink:
            sink.proc.stop()
        if dns:
            dns.proc.stop()
        if not p.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")


def params_dict(p, shards=True):
    d = {"size": p.size_mix or p.size, "connections": p.connections, "rcpts": p.rcpts,
         "domains": p.domains, "durability": p.sync, "records": p.records, "dkim": p.dkim, "blast_threads": p.blast_threads,
         "sink_threads": p.sink_threads}
    if shards:
        d["shards"] = p.shards
    return d


def run_scenario(name, bins, p, outdir):
    """direct, spate and (optionally) postfix with the same load; the summary with ratios."""
    os.makedirs(outdir, exist_ok=True)
    result = {"scenario": name, "params": params_dict(p), "load_before": load_average()}
    for target in p.targets:
        if target == "postfix" and os.geteuid() != 0:
            log("postfix: skipped (starting Postfix on its own queue needs root)")
            continue
        if target == "postfix":
            messages = p.postfix_messages
        else:
            messages = p.messages
        result[target] = run_target(target, bins, p, outdir, messages, p.rate)
    if "spate" in result and "spate-mx" in result and result["spate"]["e2e_msgs_per_s"]:
        result["ratio_mx_static_e2e"] = round(
            result["spate-mx"]["e2e_msgs_per_s"] / result["spate"]["e2e_msgs_per_s"], 3)
    if "spate" in result and "postfix" in result and result["postfix"]["e2e_msgs_per_s"]:
        result["ratio_spate_postfix_e2e"] = round(
            result["spate"]["e2e_msgs_per_s"] / result["postfix"]["e2e_msgs_per_s"], 1)
    result["load_after"] = load_average()
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(result, f, indent=1)
    if p.plots:
        plot(outdir, name)
    return result


def plot(outdir, title):
    script = os.path.join(HERE, "plot.py")
    r = subprocess.run([sys.executable, script, outdir, "--title", title])
    if r.returncode != 0:
        log(f"plotting {outdir} failed")


def binaries(p):
    b = {"spate": p.spate_bin or os.path.join(p.build, "core", "spate"),
         "blast": p.blast_bin or os.path.join(p.build, "bench", "spate-blast"),
         "sink": p.sink_bin or os.path.join(p.build, "bench", "spate-sink")}
    for k, v in b.items():
        if not os.access(v, os.X_OK):
            sys.exit(f"run-e2e: {k} binary not found at {v} (build first: make bench)")
    return b


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="run-e2e.sh",
        description="End-to-end benchmark: spate-blast -> MTA (spate, Postfix) -> spate-sink.")
    ap.add_argument("--suite", choices=["none", "full", "memory"], default="none",
                    help="full: the README's measurements (2 KB vs Postfix, 100 KB, latency "
                    "at half load); memory: bench/memory.py (1M recipients queued, kill -9 "
                    "restart, idle connections, 200k domains); none: one scenario from the "
                    "flags below")
    ap.add_argument("--targets", default="direct,spate,postfix",
                    help="comma list of direct, spate, spate-mx (routed by MX records through "
                    "a local DNS server), postfix")
    ap.add_argument("--messages", type=int, default=200000)
    ap.add_argument("--postfix-messages", type=int, default=5000,
                    help="messages for the Postfix run (it is much slower)")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--size-mix", default="", help="size:weight,... as spate-blast takes it")
    ap.add_argument("--connections", type=int, default=300)
    ap.add_argument("--rcpts", type=int, default=1)
    ap.add_argument("--domains", type=int, default=10)
    ap.add_argument("--domain-suffix", default="bench.test")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--dkim", choices=["none", "rsa", "ed25519"], default="none",
                    help="spate signs every message: RSA-2048 or Ed25519 (a key made per run)")
    ap.add_argument("--no-records", dest="records", action="store_false",
                    help="spate's [log] records = \"\" (no accounting records)")
    ap.add_argument("--cluster", action="store_true",
                    help="spate shares its limits in a Redis started for the run ([cluster])")
    ap.add_argument("--no-sync", dest="sync", action="store_false",
                    help="spate's [spool] sync = false (not durable)")
    ap.add_argument("--rate", type=float, default=0.0, help="blast rate limit, msgs/s")
    ap.add_argument("--spate-max-connections", type=int, default=16,
                    help="spate [delivery] max_connections per domain")
    ap.add_argument("--postfix-concurrency", type=int, default=50,
                    help="Postfix default_destination_concurrency_limit")
    ap.add_argument("--warm-up", type=int, default=0,
                    help="messages sent and delivered, untimed, before the measured run (spate "
                    "and Postfix): routes cached, pools open")
    ap.add_argument("--blast-threads", type=int, default=1)
    ap.add_argument("--sink-threads", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=300, help="bound per phase, seconds")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--spate-bin")
    ap.add_argument("--blast-bin")
    ap.add_argument("--sink-bin")
    ap.add_argument("--tmpdir", default=None, help="where the spools go (default: $TMPDIR)")
    ap.add_argument("--no-plots", dest="plots", action="store_false")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    ap.add_argument("--profile", action="store_true",
                    help="perf record spate during its run: <target>-perf-*.txt in --out")
    p = ap.parse_args(argv)
    p.targets = [t for t in p.targets.split(",") if t]
    for t in p.targets:
        if t not in ("direct", "spate", "spate-mx", "postfix"):
            ap.error(f"unknown target {t}")
    sizes = [int(x.split(":")[0]) for x in p.size_mix.split(",") if x] or [p.size]
    p.max_size = max(sizes)
    return p


def main(argv):
    if "--suite" in argv and argv[argv.index("--suite") + 1:][:1] == ["memory"]:
        # The memory suite has its own driver and flags (bench/memory.py --help).
        import memory
        rest = [a for i, a in enumerate(argv)
                if a != "--suite" and not (i > 0 and argv[i - 1] == "--suite")]
        return memory.main(rest)
    p = parse_args(argv)
    bins = binaries(p)
    os.makedirs(p.out, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "load_at_start": load_average(),
               "kernel": os.uname().release}
    if p.suite == "none":
        result = run_scenario("custom", bins, p, p.out)
        result["machine"] = machine
        print(json.dumps(result, indent=1))
        return 0
    # The full suite (bench/README.md): three scenarios, each in its own folder.
    results = {"machine": machine}
    base = vars(p).copy()

    def scenario(name, **overrides):
        q = argparse.Namespace(**{**base, **overrides})
        return run_scenario(name, bins, q, os.path.join(p.out, name))

    results["2k"] = scenario("2k", size=2048, size_mix="", max_size=2048)
    # DKIM (issue 12): the same 2 KB load, every message signed.
    for algorithm in ("rsa", "ed25519"):
        results[f"2k-dkim-{algorithm}"] = scenario(
            f"2k-dkim-{algorithm}", size=2048, size_mix="", max_size=2048, dkim=algorithm,
            messages=max(p.messages // 4, 1000), targets=["spate"])
    results["100k"] = scenario("100k", size=102400, size_mix="", max_size=102400,
                               messages=max(p.messages // 5, 1000),
                               targets=[t for t in p.targets if t != "postfix"])
    # MX routing (issue 9): 1,000 domains on 10 sites by MX, against the same 1,000 domains by
    # static routes.
    results["mx-1000"] = scenario("mx-1000", size=2048, size_mix="", max_size=2048,
                                  domains=1000, warm_up=1000, targets=["spate", "spate-mx"])
    peak = results["2k"].get("spate", {}).get("accept_msgs_per_s", 0)
    if peak:
        half = peak / 2
        results["latency-half-load"] = scenario(
            "latency-half-load", size=2048, size_mix="", max_size=2048, rate=half,
            messages=int(half * 10), targets=["spate"])
    results["machine"]["load_at_end"] = load_average()
    with open(os.path.join(p.out, "summary.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
