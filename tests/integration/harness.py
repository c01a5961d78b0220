"""Test harness for spate integration tests: real binary, real peers, loopback only.

Starts spate with a temporary spool and config, Postfix's smtp-sink as the destination, and
reads /metrics. Every wait is on a condition with a deadline, never a bare sleep.

Ports: no test picks a port number and hopes it stays free. spate (and spate-sink) bind port 0
and report the port they got. Postfix's smtp-sink cannot, so start_on_a_free_port() picks a
candidate, starts it, and waits until that very process listens there; when another process took
the port first, smtp-sink exits with "Address already in use" and the next candidate is tried.
A destination that must refuse connections is a ClosedPort: bound and held, never listening.
"""
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

SPATE = os.environ.get("SPATE_BIN", "build/core/spate")
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


PORT_ATTEMPTS = 20


def _candidate_port():
    """A loopback port that was free a moment ago: only a candidate, anyone may take it next."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _socket_inodes(pid):
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            link = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    return inodes


def listens_on(pid, port):
    """True when process `pid` itself holds a TCP socket listening on `port` (any address)."""
    listeners = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local_address is ADDR:PORT in hex; st 0A is LISTEN; field 9 is the inode.
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                listeners.add(fields[9])
    return bool(listeners & _socket_inodes(pid))


def start_on_a_free_port(launch, what, log_path, timeout=10, port=None):
    """For servers that cannot bind port 0 and say which port they got: `launch(port)` starts
    one on `port`, its error output going to the file `log_path`, and returns its Popen. Returns
    (proc, port) once that very process listens on the port. A server that exits saying the
    address is in use lost the candidate port to another process: it is started again on another
    one. Any other early exit fails."""
    fixed = port
    for _ in range(PORT_ATTEMPTS):
        port = fixed or _candidate_port()
        proc = launch(port)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                with open(log_path, "rb") as f:
                    err = f.read().decode("utf-8", "replace")
                if "in use" in err and not fixed:
                    break  # lost the race: the next candidate
                raise AssertionError(f"{what} on port {port} exited: {err}")
            if listens_on(proc.pid, port):
                return proc, port
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait(10)
                raise AssertionError(f"timed out after {timeout}s waiting for {what} on {port}")
            time.sleep(0.05)
    raise AssertionError(f"{what}: {PORT_ATTEMPTS} candidate ports in a row were taken")


class ClosedPort:
    """A loopback port where a connection is refused, for as long as this object lives: the
    socket is bound and never listens, so no other process can bind the port meanwhile (a port
    that was merely free when picked may be anyone's by the time spate connects to it)."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]

    def close(self):
        self._sock.close()


_UNSHARE = None


def unshare_mount():
    """The command prefix that runs a program in a mount namespace of its own where it may
    mount: as root, `unshare -m`; otherwise in a user namespace too, `unshare -rm`. Raises when
    neither works here (the test then fails, saying so)."""
    global _UNSHARE
    if _UNSHARE is None:
        for prefix in (["unshare", "-m", "--propagation", "private"],
                       ["unshare", "-rm", "--propagation", "private"]):
            probe = subprocess.run(prefix + ["sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if probe.returncode == 0:
                _UNSHARE = prefix
                break
        else:
            raise AssertionError("cannot make a mount namespace (unshare -m / -rm) for a tmpfs")
    return list(_UNSHARE)


def wait_for(predicate, timeout, what):
    """Polls `predicate` until it returns a true value; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Sink:
    """Postfix's smtp-sink on a loopback port, dumping each transaction to a file. `host`: its
    loopback address (MX tests give each mail exchanger its own 127.0.0.x); `port`: a given
    port (they share the mx_port) instead of a free one; `options`: more of smtp-sink's (say
    ["-w", "1"]: every DATA answered a second late)."""

    def __init__(self, workdir, name, host="127.0.0.1", port=None, options=()):
        self.dir = os.path.join(workdir, f"sink-{name}")
        os.makedirs(self.dir)
        args = [SMTP_SINK, *options]
        if os.geteuid() == 0:
            # smtp-sink refuses to run as root without dropping privileges.
            # Its dumps are then written as nobody, who must reach the directory.
            os.chmod(workdir, 0o755)
            os.chmod(self.dir, 0o777)
            args += ["-u", "nobody"]
        # -d: one file per mail transaction. Its stderr goes beside the dump directory.
        args += ["-d", os.path.join(self.dir, "%M.")]
        self.log_path = os.path.join(workdir, f"sink-{name}.log")

        def launch(port):
            with open(self.log_path, "wb") as log:
                # 256: listen backlog.
                return subprocess.Popen(args + [f"{host}:{port}", "256"],
                                        stdout=subprocess.DEVNULL, stderr=log)

        self.proc, self.port = start_on_a_free_port(launch, "smtp-sink", self.log_path,
                                                    port=port)

    def transactions(self):
        """The dumped transactions: list of (recipients, text)."""
        out = []
        for name in os.listdir(self.dir):
            with open(os.path.join(self.dir, name), "rb") as f:
                text = f.read().decode("utf-8", "replace")
            # A file is complete once its final line is there; smtp-sink writes it at ".".
            rcpts = re.findall(r"^X-Rcpt-Args: <([^>]*)>", text, re.M)
            out.append((rcpts, text))
        return out

    def wait_for_rcpt(self, rcpt, timeout=30):
        """The dump of the transaction to `rcpt`, once it is there."""
        def find():
            for rcpts, text in self.transactions():
                if rcpt in rcpts:
                    return text
            return None
        return wait_for(find, timeout, f"delivery to {rcpt}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def _toml_key(key):
    """A bare key, or a quoted one when it has a dot (a domain in [tls_policy])."""
    return f'"{key}"' if "." in key else key


class Spate:
    """One spate process with its own spool and config in `workdir`."""

    def __init__(self, workdir, routes, shards=2, extra="", delivery=None,
                 log_deliveries=False, server=None, sections=None, log_level=None,
                 listen="127.0.0.1:0", may_fill_disk=False, env=None, spool=None,
                 tmpfs_mb=None, dns=None, log=None):
        """`delivery`: [delivery] settings that override the defaults below (or add to them),
        e.g. {"max_connections": 3, "idle_timeout": "300ms"}. `extra`: raw TOML lines for
        [delivery]. `log_deliveries`: [log] deliveries, one log line per outcome.
        `server`: more [server] settings, e.g. {"relay_networks": ["10.0.0.0/8"]}.
        `sections`: more tables, e.g. {"tls": {"certificate": "...", "key": "..."}}.
        `log_level`: [log] level, e.g. "debug" (default: spate's, info).
        `listen`: [server] listen, e.g. "[::1]:0"; the port is always 0, read back at start.
        `may_fill_disk`: spate keeps SIGXFSZ ignored (as Python has it), so that a test may cap
        its file sizes (RLIMIT_FSIZE, fill_disk()) to act out a full disk: its writes then fail
        with EFBIG instead of the signal killing it.
        `env`: more environment variables for the process, e.g. {"LD_PRELOAD": ...}.
        `spool`: more [spool] settings, e.g. {"min_free_space": "16MB"}.
        `dns`: [dns] settings. By default the nameserver is a loopback port where nothing
        answers (tests never ask the Internet): a domain without a route is deferred after the
        timeout (2 s). A test of MX routing gives its own DNS server (tests/dns/dnsserver.py).
        `tmpfs_mb`: the spool is a tmpfs of that size in a mount namespace of spate's own
        (unshare), gone with the process: a real file system that fills up. The test reaches
        it through spool_outside().
        `log`: more [log] settings, e.g. {"records": path, "records_max_size": "20KB"}."""
        self.workdir = workdir
        self.spool = os.path.join(workdir, "spool")
        self.config = os.path.join(workdir, "spate.toml")
        route_lines = "\n".join(f'"{d}" = "127.0.0.1:{p}"' for d, p in routes.items())
        settings = {"retry_base": "500ms", "retry_max": "2s", "connect_timeout": "5s",
                    "idle_timeout": "2s"}
        settings.update(delivery or {})
        delivery_lines = "\n".join(f"{k} = {_toml_value(v)}" for k, v in settings.items())
        server_lines = "\n".join(f"{k} = {_toml_value(v)}" for k, v in (server or {}).items())
        spool_lines = "\n".join(f"{k} = {_toml_value(v)}" for k, v in (spool or {}).items())
        # The accounting records go into the test's directory (spate's default is relative to
        # its working directory), unless the test says where.
        log_settings = {"records": os.path.join(workdir, "records.jsonl")}
        log_settings.update(log or {})
        self.records_path = log_settings["records"]
        log_lines = "\n".join(f"{k} = {_toml_value(v)}" for k, v in log_settings.items())
        dns_settings = {"nameservers": ["127.0.0.1:9"], "timeout": "2s"}
        dns_settings.update(dns or {})
        dns_lines = "\n".join(f"{k} = {_toml_value(v)}" for k, v in dns_settings.items())
        # The admin API on a port of its own (tests run side by side), unless the test sets it.
        sections = dict(sections or {})
        sections.setdefault("admin", {"listen": "127.0.0.1:0"})
        section_lines = "\n".join(
            f"[{name}]\n" + "\n".join(f"{_toml_key(k)} = {_toml_value(v)}"
                                       for k, v in table.items())
            for name, table in (sections or {}).items())
        with open(self.config, "w") as f:
            f.write(f"""
[server]
listen = "{listen}"
hostname = "spate.test"
{server_lines}
[spool]
path = "{self.spool}"
{spool_lines}
[metrics]
listen = "127.0.0.1:0"
[shards]
count = {shards}
[delivery]
{delivery_lines}
{extra}
[dns]
{dns_lines}
[routes]
{route_lines}
[log]
deliveries = {_toml_value(log_deliveries)}
{f"level = {_toml_value(log_level)}" if log_level else ""}
{log_lines}
{section_lines}
""")
        self.proc = None
        self.tmpfs_mb = tmpfs_mb
        self.env = dict(os.environ, **(env or {}))
        self.may_fill_disk = may_fill_disk
        self.log_path = os.path.join(workdir, "spate.log")

    def start(self):
        self.launch()
        return self.wait_ready()

    def launch(self):
        """Starts the process and returns at once, before it is ready (start() waits)."""
        # The log is shared by restarts: this start's ready line is the first one after these.
        self._ready_seen = self._ready_count()
        self.log = open(self.log_path, "ab")
        command = [SPATE, "--config", self.config]
        if self.tmpfs_mb:
            os.makedirs(self.spool, exist_ok=True)
            # The shell mounts the tmpfs over the spool directory, then becomes spate (same
            # pid): the mount lives and dies with it.
            command = unshare_mount() + [
                "sh", "-c", f'mount -t tmpfs -o size={self.tmpfs_mb}m tmpfs "$0" && exec "$@"',
                self.spool] + command
        self.proc = subprocess.Popen(command, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=self.env,
                                     restore_signals=not self.may_fill_disk)

    def ready(self):
        """This start's ready line once it is in the log, else None."""
        lines = [l for l in self.read_log().splitlines() if "spate ready:" in l]
        return lines[-1] if len(lines) > self._ready_seen else None

    def wait_ready(self, timeout=30):
        """Waits for the ready line of the process launch() started; reads its ports."""
        ready = wait_for(self._ready_line, timeout, "spate ready line")
        self.smtp_port = int(re.search(r"smtp=(?:127\.0\.0\.1|\[::1\]):(\d+)", ready).group(1))
        self.metrics_port = int(re.search(r"metrics=127\.0\.0\.1:(\d+)", ready).group(1))
        smtps = re.search(r"smtps=127\.0\.0\.1:(\d+)", ready)
        self.smtps_port = int(smtps.group(1)) if smtps else None  # implicit TLS, when on
        return ready

    def _ready_line(self):
        if self.proc.poll() is not None:
            raise AssertionError("spate exited: " + self.read_log())
        return self.ready()

    def _ready_count(self):
        if not os.path.exists(self.log_path):
            return 0
        return len([l for l in self.read_log().splitlines() if "spate ready:" in l])

    def spool_outside(self):
        """The spool directory as this process reaches it: through spate's own root when the
        spool is its private tmpfs."""
        if self.tmpfs_mb:
            return f"/proc/{self.proc.pid}/root{self.spool}"
        return self.spool

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for_log(self, pattern, timeout=10):
        """The log once `pattern` (a regex) is in it: spate writes its lines from a thread of
        its own, a few milliseconds after they were said."""
        found = []
        def seen():
            log = self.read_log()
            if re.search(pattern, log):
                found.append(log)
                return True
            return False
        wait_for(seen, timeout, f"{pattern!r} in spate's log")
        return found[0]

    def fill_disk(self):
        """From now on no file of spate's may grow past the size of its spool's largest
        write-ahead log (the one being appended to): its next commit fails as on a full disk.
        Needs may_fill_disk. Files smaller than that (RocksDB's info log, the log of this test)
        still take their lines."""
        assert self.may_fill_disk
        wal = max(os.path.getsize(os.path.join(self.spool, f)) for f in os.listdir(self.spool)
                  if f.endswith(".log"))
        _, hard = resource.prlimit(self.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.proc.pid, resource.RLIMIT_FSIZE, (wal, hard))
        return wal

    def kill9(self):
        """SIGKILL (harmless when the process is gone already), then reaps it."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.proc.wait(30)
            self.log.close()
            return rc
        return self.proc.returncode if self.proc else None

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as r:
            return r.read().decode()

    def metric(self, name, **labels):
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
            if not m or m.group(1) != name:
                continue
            got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(m.group(3))
        return total


def _toml_value(v):
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def tempdir():
    return tempfile.mkdtemp(prefix="spate-test-")
