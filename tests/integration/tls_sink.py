"""An SMTP sink that speaks STARTTLS (RFC 3207), for the tests of outbound TLS: smtp-sink has no
TLS. It runs in the test's process, one thread per connection, on a loopback address and port,
and keeps what a test checks: each transaction's recipients and whether it came over TLS (the
version), and the most connections it ever had open at once.

mode "starttls": offers STARTTLS and does the handshake with the test certificate.
mode "plain": does not offer STARTTLS.
data_delay: seconds before each end of data is answered (a slow server keeps connections busy).
A recipient whose local part starts with "unknown" is refused with 550 5.1.1, one starting
with "busy" with 451 4.2.0.
mode "broken": offers STARTTLS, answers 220, then sends bytes that are not TLS and hangs up.
"""
import os
import socket
import socketserver
import ssl
import threading
import time

DATA = os.path.join(os.path.dirname(__file__), "..", "data")
CERT = os.path.join(DATA, "spate.test.crt")
KEY = os.path.join(DATA, "spate.test.key")


class TlsSink:
    def __init__(self, host="127.0.0.1", port=0, mode="starttls", data_delay=0.0):
        self.mode = mode
        self.data_delay = data_delay  # seconds before the reply to the end of data
        self.lock = threading.Lock()
        self.transactions = []  # (recipients, tls version or None, sni)
        self.open = 0
        self.most_open = 0
        self.connections = 0
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(CERT, KEY)
        self.sni = []
        self.context.sni_callback = lambda sock, name, ctx: self.sni.append(name)
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                with sink.lock:
                    sink.open += 1
                    sink.connections += 1
                    sink.most_open = max(sink.most_open, sink.open)
                try:
                    sink._session(self.request)
                except (OSError, ssl.SSLError):
                    pass
                finally:
                    with sink.lock:
                        sink.open -= 1

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(socketserver.ThreadingTCPServer):
            address_family = family
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server((host, port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _session(self, sock):
        tls_version = None
        f = sock.makefile("rb")

        def send(text):
            sock.sendall(text.encode())

        send("220 sink.test ESMTP\r\n")
        rcpts = []
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                caps = ["sink.test", "PIPELINING", "8BITMIME"]
                if self.mode != "plain" and tls_version is None:
                    caps.append("STARTTLS")
                send("".join(f"250-{c}\r\n" for c in caps[:-1]) + f"250 {caps[-1]}\r\n")
            elif verb == "STARTTLS" and self.mode != "plain" and tls_version is None:
                send("220 2.0.0 go ahead\r\n")
                if self.mode == "broken":
                    send("this is not a TLS record\r\n")
                    return
                sock = self.context.wrap_socket(sock, server_side=True)
                tls_version = sock.version()
                f = sock.makefile("rb")
            elif verb == "MAIL":
                rcpts = []
                send("250 2.1.0 ok\r\n")
            elif verb == "RCPT":
                rcpt = cmd[cmd.index("<") + 1:cmd.index(">")]
                if rcpt.startswith("unknown"):
                    send(f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown\r\n")
                elif rcpt.startswith("busy"):
                    send("451 4.2.0 mailbox busy, try again later\r\n")
                else:
                    rcpts.append(rcpt)
                    send("250 2.1.5 ok\r\n")
            elif verb == "DATA":
                send("354 go\r\n")
                while True:
                    body = f.readline()
                    if not body or body == b".\r\n":
                        break
                if self.data_delay:
                    time.sleep(self.data_delay)
                with self.lock:
                    self.transactions.append((list(rcpts), tls_version))
                send("250 2.0.0 queued\r\n")
            elif verb == "QUIT":
                send("221 2.0.0 bye\r\n")
                return
            else:  # RSET, NOOP
                send("250 2.0.0 ok\r\n")

    def rcpts(self):
        with self.lock:
            return sorted(r for rs, _ in self.transactions for r in rs)

    def tls_of(self, rcpt):
        """The TLS version the transaction to `rcpt` came over (None: in the clear); raises
        KeyError before it came."""
        with self.lock:
            for rs, version in self.transactions:
                if rcpt in rs:
                    return version
        raise KeyError(rcpt)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
