#!/usr/bin/env python3
"""spate end-to-end benchmark driver (run it through bench/run-e2e.sh or `make bench`).

One run: spate-sink on a loopback port, then the MTA under test (spate with a real durable
spool in a temporary directory, or Postfix 3.7 from Debian with its queue in a temporary
directory, or Haraka 3 from npm relaying in memory, all relaying every destination domain to
the sink), then spate-blast into its submission port. It waits until the sink holds every
accepted message, reads the MTA's CPU time and peak RSS from /proc, and prints one JSON
summary. The same load also goes straight from spate-blast to spate-sink ("direct"), to show
the instruments are not the limit. Target "spate-mx" is spate routing by MX records instead of
static routes: a DNS server on loopback (tests/dns/dnsserver.py, python3-dnslib) gives domain
d<i> the MX host mx<i % 10>, so the domains roll up into 10 sites, each of whose MX names
resolves to the sink's 127.0.0.1.

Everything is on loopback, every load is bounded in messages and in time, and every process
this script starts is stopped by it (by pid) before it returns.

Python standard library only.
"""
import argparse
import fcntl
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

import disk

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


def tcp_counters():
    """Kernel TCP counters since boot that spoil a run when they move (every process's, this
    machine's network namespace): handshakes dropped because a listener's accept queue was full
    (TcpExt ListenOverflows: the client waits 1 s or more for its SYN to be sent again), and
    segments sent again (Tcp RetransSegs)."""
    out = {"listen_overflows": 0, "retransmitted_segments": 0}
    for path, table, field, key in (("/proc/net/netstat", "TcpExt:", "ListenOverflows",
                                     "listen_overflows"),
                                    ("/proc/net/snmp", "Tcp:", "RetransSegs",
                                     "retransmitted_segments")):
        try:
            with open(path) as f:
                rows = [line.split() for line in f if line.startswith(table)]
        except OSError:
            continue
        for names, values in zip(rows[0::2], rows[1::2]):
            if field in names:
                out[key] = int(values[names.index(field)])
    return out


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
        # --no-pipeline-next: the next MAIL waits for the end-of-data reply (spates that know
        # [delivery] pipeline_next).
        pipeline_next = ""
        if re.search(r"^pipeline_next\s*=", defaults, re.M):
            pipeline_next = f"pipeline_next = {'true' if p.pipeline_next else 'false'}\n"
        with open(self.config, "w") as f:
            f.write(f"""# generated by bench/e2e.py
[server]
listen = "127.0.0.1:0"
hostname = "spate.bench.test"
max_recipients = {max(100, p.rcpts)}
{server_extra}[spool]
path = "{self.spool}"
sync = {"true" if p.sync else "false"}
{f'body_log_min_size = "{p.body_log_min_size}"' if p.body_log_min_size else ""}
[metrics]
listen = "127.0.0.1:0"
[shards]
count = {p.shards}
[delivery]
max_connections = {p.spate_max_connections}
{pipeline_next}retry_base = "1s"
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


def descendants_of(pid):
    """Every live process below `pid` (children, their children, ...)."""
    out, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


class ProcessTreeMta:
    """An MTA of several processes under one master (self.master): Postfix, Haraka's cluster."""
    master = None
    blast_extra = ()  # spate-blast flags this MTA needs

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


class PostfixMta(ProcessTreeMta):
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

    def stop(self):
        if self.started:
            subprocess.run(["postfix", "-c", self.conf, "stop"], capture_output=True)
            try:
                wait_for(lambda: not os.path.exists(f"/proc/{self.master}"), 30, "postfix stop")
            except TimeoutError:
                subprocess.run(["postfix", "-c", self.conf, "abort"], capture_output=True)
            self.started = False


class HarakaMta(ProcessTreeMta):
    """Haraka 3 (npm, ensure_haraka()) on a config directory made for the run: relays everything
    from 127.0.0.0/8 (plugin relay, its ACL) to the sink (queue/smtp_forward). No spool: each
    message is forwarded from memory while its client waits for the 250 (nothing is fsync'd)."""
    name = "haraka"
    # Haraka answers 503 to commands pipelined after the end of data ("command pipelined after
    # end of DATA - refused"): the blast waits for each 250 before the next MAIL.
    blast_extra = ("--no-pipeline-next",)

    def __init__(self, bins, workdir, sink_port, p):
        node, haraka, self.version = ensure_haraka()
        self.dir = os.path.join(workdir, "haraka")
        self.proc = None
        # The config directory as `haraka -i` makes one (Haraka's own connection.ini, log.ini,
        # smtp.ini, plugins), then only what relaying to the sink needs is changed.
        r = subprocess.run([node, haraka, "-i", self.dir], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60)
        conf = os.path.join(self.dir, "config")
        if r.returncode != 0 or not os.path.exists(os.path.join(conf, "connection.ini")):
            raise RuntimeError(f"haraka -i {self.dir} failed: {r.stdout}{r.stderr}")

        def write(name, text):
            with open(os.path.join(conf, name), "w") as f:
                f.write(text)
        # nodes: cpus by default (--haraka-nodes), one worker per core as spate has a shard per
        # core: the line Haraka's shipped smtp.ini suggests (unset, it runs one worker).
        write("smtp.ini", f"""; generated by bench/e2e.py: loopback, a port the kernel picks
listen=127.0.0.1:0
nodes={p.haraka_nodes}
""")
        write("me", "haraka.bench.test\n")
        # Only these plugins: no DNS of the client (fcrdns, dns-list), of the sender
        # (mail_from.is_resolvable, which Haraka's own list has) or anything else.
        write("plugins", "# generated by bench/e2e.py\nrelay\nqueue/smtp_forward\n")
        write("relay.ini", "; generated by bench/e2e.py\n[relay]\nacl=true\nforce_routing=false\n")
        write("relay_acl_allow", "127.0.0.0/8\n")
        # Haraka 3's smtp_forward opens one connection to the host per message (connect, EHLO,
        # MAIL, RCPT, DATA, QUIT: its pool was removed in Haraka 3.0) and reads no connection
        # limit, so there is no pool to size; the sink offers no STARTTLS, enable_tls=false
        # all the same.
        write("smtp_forward.ini", f"""; generated by bench/e2e.py: everything to the sink
host=127.0.0.1
port={sink_port}
enable_tls=false
enable_outbound=true
""")
        # connection.ini as Haraka ships it, [max] bytes (25 MB) raised if the run's messages
        # could come near it.
        path = os.path.join(conf, "connection.ini")
        with open(path) as f:
            text = f.read()
        limit = max(26214400, 2 * p.max_size)
        text, n = re.subn(r"^bytes=\d+$", f"bytes={limit}", text, flags=re.M)
        if n != 1:
            text += f"\n[max]\nbytes={limit}\n"
        write("connection.ini", text)

        self.log_path = os.path.join(self.dir, "haraka.log")
        self.proc = Proc([node, haraka, "-c", self.dir], self.log_path,
                         os.path.join(self.dir, "haraka.err"))
        self.master = self.proc.pid
        nodes = str(p.haraka_nodes)
        workers = (os.cpu_count() or 1) if nodes == "cpus" else int(nodes)

        def ready():
            if not self.proc.alive():
                raise RuntimeError(f"haraka exited {self.proc.p.returncode}: "
                                   f"{self._log()[-3000:]}")
            text = self._log()
            if workers:  # the master logs each cluster worker's listener
                ports = re.findall(r"worker \d+ listening on 127\.0\.0\.1:(\d+)", text)
                return len(ports) >= workers and int(ports[0])
            m = re.search(r"Listening on 127\.0\.0\.1:(\d+)", text)
            return m and int(m.group(1))
        self.workers = set()
        try:
            self.smtp_port = wait_for(ready, 60, "haraka listening")
            if self.master not in listening_pids(self.smtp_port):
                raise RuntimeError(f"haraka: port {self.smtp_port} is not its master's")
        except BaseException:
            self.stop()  # run_target has no handle on it yet
            raise
        self.workers = set(descendants_of(self.master))
        log(f"haraka: Haraka {self.version}, nodes={nodes}, on 127.0.0.1:{self.smtp_port}")

    def _log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def _processes(self):
        return [self.master] + descendants_of(self.master)

    def stop(self):
        """SIGTERM to the master (SIGKILL after 30 s); its cluster workers exit when the master's
        channel closes; any still there after 10 s are killed by pid."""
        if not self.proc:
            return
        workers = set(getattr(self, "workers", ()))
        if self.proc.alive():
            workers.update(descendants_of(self.master))
        self.proc.stop(30)
        self.proc = None

        def ours(pid):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        return False
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    return self.dir.encode() in f.read()
            except OSError:
                return False
        try:
            wait_for(lambda: not any(ours(pid) for pid in workers), 10, "haraka workers to exit")
        except TimeoutError:
            for pid in workers:
                if ours(pid):
                    log(f"haraka: worker {pid} still running, killing it")
                    os.kill(pid, signal.SIGKILL)


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


HARAKA_NPM_SPEC = "Haraka@3"  # the major version is pinned; npm takes its newest 3.x
HARAKA_DIR = os.path.join(HERE, ".haraka")  # the driver's own npm prefix (in .gitignore)


class HarakaUnavailable(RuntimeError):
    """Haraka cannot be had here (no Node.js or npm, or the install failed): skip the target."""


def _installed_haraka():
    """(haraka's bin script, version) of the Haraka 3 in HARAKA_DIR, or None."""
    base = os.path.join(HARAKA_DIR, "node_modules", "Haraka")
    try:
        with open(os.path.join(base, "package.json")) as f:
            version = json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return None
    script = os.path.join(base, "bin", "haraka")
    if version.split(".")[0] != HARAKA_NPM_SPEC.split("@")[1] or not os.path.exists(script):
        return None
    return script, version


_haraka_failure = None  # why ensure_haraka() failed in this process: not tried again


def ensure_haraka():
    """(node, haraka's bin script, version): Haraka from npm, installed on first use into
    HARAKA_DIR (non-interactive: CI=true, no stdin). HarakaUnavailable when it cannot be."""
    global _haraka_failure
    if _haraka_failure:
        raise HarakaUnavailable(_haraka_failure)
    try:
        return _ensure_haraka()
    except HarakaUnavailable as e:
        _haraka_failure = str(e)
        raise


def _ensure_haraka():
    node = shutil.which("node")
    if not node:
        raise HarakaUnavailable("node not found; Haraka 3 needs Node.js >= 20 and npm")
    r = subprocess.run([node, "--version"], capture_output=True, text=True)
    m = re.match(r"v(\d+)", r.stdout)
    if not m or int(m.group(1)) < 20:
        raise HarakaUnavailable(f"Haraka 3 needs Node.js >= 20, this node is {r.stdout.strip()}")
    found = _installed_haraka()
    if found:
        return (node, *found)
    npm = shutil.which("npm")
    if not npm:
        raise HarakaUnavailable("npm not found (it installs Haraka)")
    os.makedirs(HARAKA_DIR, exist_ok=True)
    with open(os.path.join(HARAKA_DIR, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run of the driver may be installing it
        found = _installed_haraka()
        if found:
            return (node, *found)
        package = os.path.join(HARAKA_DIR, "package.json")
        if not os.path.exists(package):  # so that npm installs here, not in a parent folder
            with open(package, "w") as f:
                f.write('{"name": "spate-bench-haraka", "private": true}\n')
        cmd = [npm, "install", "--no-audit", "--no-fund", "--no-update-notifier",
               HARAKA_NPM_SPEC]
        log(f"haraka: installing {HARAKA_NPM_SPEC} from npm into {HARAKA_DIR}: "
            f"{' '.join(cmd[1:])}")
        env = dict(os.environ, CI="true")
        try:
            r = subprocess.run(cmd, cwd=HARAKA_DIR, env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise HarakaUnavailable(f"npm install {HARAKA_NPM_SPEC} failed: {e}")
        engine = 0
        for line in (r.stdout + r.stderr).splitlines():
            if "EBADENGINE" in line:  # blocks of lines per dependency that wants a newer node
                engine += line.rstrip().endswith("Unsupported engine {")
            elif line.strip():
                log(f"npm: {line.rstrip()}")
        if engine:
            log(f"npm: {engine} EBADENGINE warnings (dependencies that ask for a newer Node.js)")
        if r.returncode != 0:
            raise HarakaUnavailable(f"npm install {HARAKA_NPM_SPEC} exited {r.returncode}")
        found = _installed_haraka()
        if not found:
            raise HarakaUnavailable(f"npm install {HARAKA_NPM_SPEC} left no Haraka 3 in "
                                    f"{HARAKA_DIR}")
        log(f"haraka: installed Haraka {found[1]}")
        return (node, *found)


def blast_args(bins, port, p, out_json, messages, rate=0.0, extra=()):
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
    return args + list(extra)


def run_target(target, bins, p, outdir, messages, rate=0.0):
    """One measured run; returns its summary dict. Raw JSON files stay in `outdir`."""
    work = tempfile.mkdtemp(prefix=f"spate-bench-{target}-", dir=p.tmpdir)
    sink = mta = dns = None
    try:
        sink_extra = ()
        if getattr(p, "sink_reply_delay_ms", 0):
            sink_extra = ("--reply-delay-ms", str(p.sink_reply_delay_ms))
        sink = Sink(bins, work, p.sink_threads, sink_extra)
        if target == "spate":
            mta = SpateMta(bins, work, sink.port, p)
        elif target == "spate-mx":
            dns = DnsServer(work, p)
            mta = SpateMta(bins, work, sink.port, p, dns_port=dns.port)
        elif target == "postfix":
            mta = PostfixMta(bins, work, sink.port, p)
        elif target == "haraka":
            mta = HarakaMta(bins, work, sink.port, p)
        port = mta.smtp_port if mta else sink.port
        extra = getattr(mta, "blast_extra", ())
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
            subprocess.run(blast_args(bins, port, p, warm_json, warm, extra=extra),
                           stdout=subprocess.DEVNULL)
            with open(warm_json) as f:
                warm = json.load(f)["messages_accepted"] * p.rcpts
            wait_for(lambda: sink.received() >= warm, p.timeout, f"{warm} warm-up deliveries",
                     interval=0.1)
        blast_json = os.path.join(outdir, f"{target}-blast.json")
        log(f"{target}: {messages} messages of {p.size_mix or p.size} octets, "
            f"{p.connections} connections" + (f", rate {rate:.0f}/s" if rate else ""))
        busy0, total0 = machine_cpu()
        tcp0 = tcp_counters()
        sink_cpu0 = proc_cpu_seconds(sink.proc.pid)
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run(blast_args(bins, port, p, blast_json, messages, rate, extra),
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
        tcp1 = tcp_counters()
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
        haraka = ({"version": mta.version, "nodes": str(p.haraka_nodes),
                   "blast_flags": list(mta.blast_extra)} if isinstance(mta, HarakaMta) else None)
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
            # The MTA's connections to the sink (most open at once), and what each carried.
            "sink_connections": sink_json["max_concurrent_connections"],
            "msgs_per_conn_per_s": round(e2e / max(sink_json["max_concurrent_connections"], 1),
                                         2),
            "errors": blast["errors"],
            # Context: how busy the whole machine was from the blast's start to the last
            # delivery (100% = every core), and what the instruments themselves used.
            "machine_cpu_busy_pct": round(100.0 * (busy1 - busy0) / max(total1 - total0, 1), 1),
            "other_processes_cores": round(max(others, 0) / max(window_s, 1e-9), 2),
            "blast_cpu_s_per_1000_msgs": round(blast_cpu / max(messages, 1) * 1000, 4),
            "sink_cpu_s_per_1000_msgs": round(sink_cpu / max(delivered, 1) * 1000, 4),
            # Handshakes dropped and segments sent again meanwhile, on loopback: not 0, the
            # run waited on TCP's timers somewhere, and its rate and tail say less.
            "tcp_listen_overflows": tcp1["listen_overflows"] - tcp0["listen_overflows"],
            "tcp_retransmitted_segments": (tcp1["retransmitted_segments"] -
                                           tcp0["retransmitted_segments"]),
        }
        if cpu is not None:
            summary["cpu_s_per_1000_msgs"] = round(cpu / max(delivered, 1) * 1000, 4)
            summary["cpu_s"] = round(cpu, 2)
            summary["peak_rss_mb"] = round(rss / 1024, 1)
        if spate_delivered is not None:
            summary["spate_deliveries_total_delivered"] = spate_delivered
            summary["spool"] = spool
        if haraka:
            summary["haraka"] = haraka
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
    """direct, spate and (optionally) postfix and haraka with the same load; the summary with
    ratios."""
    os.makedirs(outdir, exist_ok=True)
    result = {"scenario": name, "params": params_dict(p), "load_before": load_average()}
    for target in p.targets:
        if target == "postfix" and os.geteuid() != 0:
            log("postfix: skipped (starting Postfix on its own queue needs root)")
            continue
        if target == "haraka":
            try:
                ensure_haraka()
            except HarakaUnavailable as e:
                log(f"haraka: skipped ({e})")
                continue
        if target == "postfix":
            messages = p.postfix_messages
        elif target == "haraka":
            messages = p.haraka_messages
        else:
            messages = p.messages
        result[target] = run_target(target, bins, p, outdir, messages, p.rate)
    def ratio(name, num, den, digits):
        """`name`: e2e msg/s of target `num` over `den`'s, when both ran."""
        if num in result and den in result and result[den]["e2e_msgs_per_s"]:
            result[name] = round(
                result[num]["e2e_msgs_per_s"] / result[den]["e2e_msgs_per_s"], digits)
    ratio("ratio_mx_static_e2e", "spate-mx", "spate", 3)
    ratio("ratio_spate_postfix_e2e", "spate", "postfix", 1)
    ratio("ratio_spate_direct_e2e", "spate", "direct", 3)
    ratio("ratio_spate_haraka_e2e", "spate", "haraka", 1)
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
        description="End-to-end benchmark: spate-blast -> MTA (spate, Postfix, Haraka) -> "
        "spate-sink.")
    ap.add_argument("--suite", choices=["none", "full", "memory"], default="none",
                    help="full: the README's measurements (2 KB vs Postfix and Haraka, 100 KB, "
                    "latency at half load); memory: bench/memory.py (1M recipients queued, kill -9 "
                    "restart, idle connections, 200k domains); none: one scenario from the "
                    "flags below")
    ap.add_argument("--targets", default="direct,spate,postfix,haraka",
                    help="comma list of direct, spate, spate-mx (routed by MX records through "
                    "a local DNS server), postfix, haraka (Haraka 3 from npm, installed into "
                    "bench/.haraka/ on first use)")
    ap.add_argument("--messages", type=int, default=200000)
    ap.add_argument("--postfix-messages", type=int, default=5000,
                    help="messages for the Postfix run (it is much slower)")
    ap.add_argument("--haraka-messages", type=int, default=20000,
                    help="messages for the Haraka run (it is much slower)")
    ap.add_argument("--haraka-nodes", default="cpus",
                    help="Haraka smtp.ini nodes: cluster workers, a number or cpus (default cpus, "
                    "the line its shipped smtp.ini suggests: one worker per core, as spate has "
                    "a shard per core; unset, Haraka runs one)")
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
    ap.add_argument("--body-log-min-size", default="",
                    help='spate\'s [spool] body_log_min_size ("64KB", "0": every body, "off": '
                    "none; default: spate's)")
    ap.add_argument("--rate", type=float, default=0.0, help="blast rate limit, msgs/s")
    ap.add_argument("--sink-reply-delay-ms", type=float, default=0.0,
                    help="spate-sink waits this long before every reply (a far receiver)")
    ap.add_argument("--no-pipeline-next", dest="pipeline_next", action="store_false",
                    help="spate: [delivery] pipeline_next = false (the next MAIL waits for the "
                    "end-of-data reply)")
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
        if t not in ("direct", "spate", "spate-mx", "postfix", "haraka"):
            ap.error(f"unknown target {t}")
    if p.haraka_nodes != "cpus" and not p.haraka_nodes.isdigit():
        ap.error("--haraka-nodes takes a number or cpus")
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
    # The disk under the spools, alone (bench/disk.py): what any durable spool there is bound by.
    log("disk: append + fdatasync, 1, 4 and 16 MB at a time, and 8 KB")
    results["disk"] = disk.measure(p.tmpdir or tempfile.gettempdir())

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
                               targets=[t for t in p.targets if t not in ("postfix", "haraka")])
    # MX routing (issue 9): 1,000 domains on 10 sites by MX, against the same 1,000 domains by
    # static routes.
    results["mx-1000"] = scenario("mx-1000", size=2048, size_mix="", max_size=2048,
                                  domains=1000, warm_up=1000, targets=["spate", "spate-mx"])
    # One round trip per message (issue 17): a receiver that answers each command after 20 ms,
    # spate with the next transaction behind the end of data and without.
    for name, on in (("2k-reply-delay-20ms", True), ("2k-reply-delay-20ms-no-next", False)):
        results[name] = scenario(name, size=2048, size_mix="", max_size=2048,
                                 sink_reply_delay_ms=20, pipeline_next=on,
                                 messages=max(p.messages // 4, 1000), targets=["spate"])
    on = results["2k-reply-delay-20ms"].get("spate", {}).get("msgs_per_conn_per_s")
    off = results["2k-reply-delay-20ms-no-next"].get("spate", {}).get("msgs_per_conn_per_s")
    if on and off:
        results["ratio_pipeline_next_msgs_per_conn"] = round(on / off, 2)
    # Each scenario's spate against the instruments' ceiling of its size (issue 17's goals).
    ceiling = {2048: results["2k"].get("direct", {}).get("e2e_msgs_per_s"),
               102400: results["100k"].get("direct", {}).get("e2e_msgs_per_s")}
    for name in ("2k", "2k-dkim-rsa", "2k-dkim-ed25519", "100k"):
        top = ceiling[102400 if name == "100k" else 2048]
        got = results[name].get("spate", {}).get("e2e_msgs_per_s")
        if top and got:
            results[name]["ratio_spate_ceiling_e2e"] = round(got / top, 3)
    # 100 KB against the disk's bound too: one copy of each body, synced 4 MB at a time.
    got = results["100k"].get("spate", {}).get("e2e_msgs_per_s")
    bound = (results["disk"]["bound_100k"] or {}).get("msgs_per_s_100k")
    if got and bound:
        results["100k"]["ratio_spate_disk_bound"] = round(got / bound, 3)
    peak = results["2k"].get("spate", {}).get("accept_msgs_per_s", 0)
    if peak:
        half = peak / 2
        results["latency-half-load"] = scenario(
            "latency-half-load", size=2048, size_mix="", max_size=2048, rate=half,
            messages=int(half * 10), targets=["spate"])
        # The floor under a durable accept: the disk's own fdatasync of a small batch.
        results["latency-half-load"]["disk_fdatasync_ms"] = results["disk"]["fdatasync_ms"]
    results["machine"]["load_at_end"] = load_average()
    with open(os.path.join(p.out, "summary.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
