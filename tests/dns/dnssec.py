"""DNSSEC-signed test zones on loopback, for the DANE tests (RFC 7672): Debian's nsd serving zone
files that ldns-signzone signed, on a free 127.0.0.1 port (never 53), with a trust-anchor file a
validator (libunbound's ub_ctx_add_ta_file(), unbound-host, drill) reads. A real signer and a
real authoritative server, so that what spate's validator calls secure, insecure or bogus is
what a real deployment would send it.

Use: z = SignedZones(workdir, {"dane.test": [...records...], "plain.test": [...]},
                     signed={"dane.test"}, bogus={"_25._tcp.bad.dane.test.": "TLSA"})
     ... point a validating resolver at 127.0.0.1@z.port (as a forwarder: nsd answers RD=1
     queries for its own zones authoritatively, DNSKEY at each signed apex), with
     z.trust_anchor_file ... ; z.stop()
Validator: a validating unbound in front of them, for spate's [dns] trust_ad (package unbound).
Needs the packages nsd and ldnsutils; the standard library only (any python3 may import it).
"""
import base64
import os
import socket
import subprocess
import struct
import time


def _soa_query(name):
    """A DNS query (RFC 1035 §4.1) for the SOA of `name`, id 1, RD set."""
    qname = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    return struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 6, 1)


def _answer_count(reply):
    """ANCOUNT of a DNS reply (0 for anything too short to be one)."""
    return struct.unpack(">H", reply[6:8])[0] if len(reply) >= 12 else 0


def _free_udp_port():
    """A port free on 127.0.0.1 right now (nsd binds it for UDP and TCP a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args, cwd):
    """Runs a signing tool, bounded; its stdout, or an AssertionError with its stderr."""
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({r.returncode}): {r.stderr}{r.stdout}")
    return r.stdout


def _stop(proc):
    """SIGTERM, then SIGKILL after 10 s; harmless when it is gone already."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _read_log(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return f"(no {os.path.basename(path)})"


def _corrupt_rrsig(line):
    """The RRSIG line with its signature's bytes flipped: same shape, fails verification."""
    fields = line.split()
    # name ttl class RRSIG covered alg labels origttl expiration inception keytag signer sig...
    sig = bytearray(base64.b64decode("".join(fields[12:])))
    for i in range(0, len(sig), 7):
        sig[i] ^= 0xFF
    return " ".join(fields[:12] + [base64.b64encode(bytes(sig)).decode()])


class SignedZones:
    """nsd on a free 127.0.0.1 port serving the given zones; those in `signed` are DNSSEC-signed
    (ldns-keygen ECDSAP256SHA256 KSK+ZSK, ldns-signzone with NSEC), the others plain.
    trust_anchor_file: a file with the signed zones' DS records (of their KSKs, SHA-256) in the
    zone-file form libunbound's ub_ctx_add_ta_file() reads ("dane.test. 3600 IN DS ...").

    zones: {"dane.test": ["dane.test. 300 IN MX 10 mx.dane.test.", ...], "plain.test": [...]};
    absolute names. SOA, NS and the NS's A (ns.<zone>. 127.0.0.1) are added here.
    bogus: {"name.": "TYPE"}: after signing, the RRSIG over that RRset has its signature
    corrupted, so a validator calls it bogus while the data stays."""

    def __init__(self, workdir, zones, signed, bogus=None):
        self.dir = os.path.abspath(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None
        self.trust_anchor_file = os.path.join(self.dir, "trust-anchors")
        bogus = {n.lower(): t.upper() for n, t in (bogus or {}).items()}
        anchors = []
        for zone, records in zones.items():
            zone = zone.rstrip(".").lower()
            path = os.path.join(self.dir, f"{zone}.zone")
            with open(path, "w") as f:
                f.write(f"{zone}. 300 IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 300\n"
                        f"{zone}. 300 IN NS ns.{zone}.\n"
                        f"ns.{zone}. 300 IN A 127.0.0.1\n")
                f.writelines(r + "\n" for r in records)
            if zone in signed:
                anchors.append(self._sign(zone, path, bogus))
        with open(self.trust_anchor_file, "w") as f:
            f.writelines(anchors)
        self._start([z.rstrip(".").lower() for z in zones])

    def _sign(self, zone, path, bogus):
        """Signs `path` in place (NSEC, a KSK and a ZSK of ECDSA P-256, valid from an hour ago
        for 30 days, so clock skew does not matter); corrupts the bogus RRSIGs; returns the
        KSK's DS line."""
        keydir = os.path.join(self.dir, f"keys-{zone}")
        os.makedirs(keydir, exist_ok=True)
        keygen = ["ldns-keygen", "-r", "/dev/urandom", "-a", "ECDSAP256SHA256"]
        ksk = _run(keygen + ["-k", zone], keydir).strip()
        zsk = _run(keygen + [zone], keydir).strip()
        now = int(time.time())
        _run(["ldns-signzone", "-i", str(now - 3600), "-e", str(now + 30 * 86400),
              "-o", zone, "-f", path + ".signed", path,
              os.path.join(keydir, ksk), os.path.join(keydir, zsk)], self.dir)
        with open(path + ".signed") as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines):
            fields = line.split()
            if (len(fields) > 12 and fields[3] == "RRSIG"
                    and bogus.get(fields[0].lower()) == fields[4].upper()):
                lines[i] = _corrupt_rrsig(line)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        # -n: to stdout; -2: SHA-256 digest.
        return _run(["ldns-key2ds", "-n", "-2", os.path.join(keydir, ksk + ".key")], keydir)

    def _start(self, zones):
        """nsd in the foreground with a config of ours (no database, no chroot, no privilege
        drop, every state file in workdir); retries on another port if it cannot bind."""
        for _ in range(5):
            self.port = _free_udp_port()
            conf = os.path.join(self.dir, "nsd.conf")
            d = self.dir
            with open(conf, "w") as f:
                f.write(f"""server:
    ip-address: 127.0.0.1@{self.port}
    port: {self.port}
    do-ip6: no
    server-count: 1
    zonesdir: "{d}"
    pidfile: "{d}/nsd.pid"
    database: ""
    zonelistfile: "{d}/zone.list"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    chroot: ""
    username: ""
    logfile: "{d}/nsd.log"
    verbosity: 1
    hide-version: yes
remote-control:
    control-enable: no
""")
                for z in zones:
                    f.write(f'zone:\n    name: "{z}"\n    zonefile: "{d}/{z}.zone"\n')
            self.proc = subprocess.Popen(["nsd", "-d", "-c", conf], cwd=d,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready(zones[0], 10):
                return
            self.stop()
        raise AssertionError("nsd did not start: " + self._log())

    def _wait_ready(self, zone, timeout):
        """True once nsd answers the first zone's SOA; False if it exited or timed out."""
        deadline = time.monotonic() + timeout
        query = _soa_query(zone + ".")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.2)
                try:
                    s.sendto(query, ("127.0.0.1", self.port))
                    if _answer_count(s.recv(4096)) > 0:
                        return True
                except OSError:  # a timeout, or refused while nsd is still binding
                    time.sleep(0.05)
        return False

    def _log(self):
        return _read_log(os.path.join(self.dir, "nsd.log"))

    def stop(self):
        _stop(self.proc)


class Validator:
    """A validating unbound (Debian's unbound) on a free 127.0.0.1 port, holding the zones'
    trust anchors and forwarding everything to their nsd: what [dns] trust_ad expects in front
    of spate, a local resolver whose AD bit says validated and which answers SERVFAIL for
    bogus data (RFC 4035 §5.5). Use: v = Validator(workdir, zones); 127.0.0.1:v.port; v.stop()
    """

    def __init__(self, workdir, zones):
        self.dir = os.path.abspath(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None
        for _ in range(5):
            self.port = _free_udp_port()
            conf = os.path.join(self.dir, "unbound.conf")
            with open(conf, "w") as f:
                f.write(f"""server:
    interface: 127.0.0.1@{self.port}
    port: {self.port}
    do-ip6: no
    num-threads: 1
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{self.dir}"
    pidfile: ""
    use-syslog: no
    logfile: "{self.dir}/unbound.log"
    verbosity: 1
    do-not-query-localhost: no
    module-config: "validator iterator"
    trust-anchor-file: "{zones.trust_anchor_file}"
    val-log-level: 2
    local-zone: "test." transparent
    access-control: 127.0.0.0/8 allow
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{zones.port}
""")
            self.proc = subprocess.Popen(["unbound", "-d", "-c", conf], cwd=self.dir,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_ready(10):
                return
            self.stop()
        raise AssertionError("unbound did not start: " + self._log())

    def _wait_ready(self, timeout):
        """True once unbound answers (any reply to a query for the root's SOA)."""
        deadline = time.monotonic() + timeout
        query = _soa_query("test.")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.2)
                try:
                    s.sendto(query, ("127.0.0.1", self.port))
                    s.recv(4096)
                    return True
                except OSError:
                    time.sleep(0.05)
        return False

    def _log(self):
        return _read_log(os.path.join(self.dir, "unbound.log"))

    def stop(self):
        _stop(self.proc)
