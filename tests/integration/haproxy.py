"""HAProxy (Debian's haproxy) on loopback in front of spate nodes, for the scale-out tests
(issue 15): TCP frontends on free 127.0.0.1 ports, each balancing to the nodes' submission ports
with the PROXY protocol (v2 or v1), HAProxy's SMTP health check on every server (sent with a
PROXY header too), and an admin socket to read the servers' state.

Use: h = HAProxy(workdir, [spate_port, ...]); h.port_v2, h.port_v1; h.server_states(); h.stop()
"""
import os
import socket
import subprocess
import time


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HAProxy:
    def __init__(self, workdir, backends, check_interval="300ms"):
        self.dir = os.path.abspath(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.socket_path = os.path.join(self.dir, "haproxy.sock")
        self.log_path = os.path.join(self.dir, "haproxy.log")
        self.proc = None
        for _ in range(5):
            self.port_v2 = _free_port()
            self.port_v1 = _free_port()
            servers_v2 = "\n".join(
                f"    server node{i} 127.0.0.1:{p} send-proxy-v2 check check-send-proxy "
                f"inter {check_interval} fall 1 rise 1 source 127.0.0.1"
                for i, p in enumerate(backends))
            servers_v1 = "\n".join(
                f"    server node{i} 127.0.0.1:{p} send-proxy source 127.0.0.1"
                for i, p in enumerate(backends))
            conf = os.path.join(self.dir, "haproxy.cfg")
            with open(conf, "w") as f:
                f.write(f"""global
    stats socket {self.socket_path} mode 600 level admin
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend smtp_v2
    bind 127.0.0.1:{self.port_v2}
    default_backend spate_v2
backend spate_v2
    balance roundrobin
    option smtpchk EHLO haproxy.test
{servers_v2}
frontend smtp_v1
    bind 127.0.0.1:{self.port_v1}
    default_backend spate_v1
backend spate_v1
    balance roundrobin
{servers_v1}
""")
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(["haproxy", "-db", "-f", conf], cwd=self.dir,
                                             stdout=log, stderr=log)
            if self._wait_ready(10):
                return
            self.stop()
        raise AssertionError("haproxy did not start: " + open(self.log_path).read())

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port_v1), timeout=0.5):
                    pass
                if os.path.exists(self.socket_path):
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def command(self, line):
        """One admin socket command's answer."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.socket_path)
            s.sendall(line.encode() + b"\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out.decode()

    def server_states(self, backend="spate_v2"):
        """{server name: status} from "show stat" ("UP", "DOWN", "no check", ...)."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = row["status"]
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
