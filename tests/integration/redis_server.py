"""A Redis server (Debian's redis-server) for one test, on a free 127.0.0.1 port, with no
persistence: the shared state of a fleet of spate nodes ([cluster] redis). kill() is the outage
a test acts out (SIGKILL, nothing flushed)."""
import os
import socket
import subprocess
import time


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, workdir, password=None):
        self.password = password
        self.dir = os.path.abspath(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.log_path = os.path.join(self.dir, "redis.log")
        self.proc = None
        for _ in range(5):
            self.port = _free_port()
            if self._launch():
                return
        raise AssertionError("redis-server did not start")

    def restart(self):
        """Back on the same port (empty: nothing is persisted), after kill()."""
        if not self._launch():
            raise AssertionError("redis-server did not start again")

    def _launch(self):
        """redis-server on self.port; True once it answers PING."""
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--dir", self.dir, "--logfile", self.log_path,
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self._wait_ready(10):
            return True
        self.kill()
        return False

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if self.command("PING") in ("+PONG", "-NOAUTH Authentication required."):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def command(self, *args):
        """One command in RESP; the reply's first line (enough for PING, ZCARD, GET)."""
        out = f"*{len(args)}\r\n" + "".join(f"${len(str(a))}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(out.encode())
            return s.recv(65536).decode().split("\r\n")[0]

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
