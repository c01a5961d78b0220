#!/usr/bin/python3
"""A DNS server for the tests, on a loopback UDP (and TCP) port: python3-dnslib answering from a
zone file of JSON, re-read whenever it changes, so that a test can change its answers while the
server runs. Prints "port=<n>" once it listens, then serves until killed. Every query is logged
to stdout as "query <name> <type>" (a test counts them: what a cache saved).

Zone file: {"records": [["mail.test.", "MX", 3600, "10 mx1.mail.test."],
                        ["mx1.mail.test.", "A", 3600, "127.0.0.2"], ...],
            "servfail": ["broken.test."],   # answered SERVFAIL
            "drop": ["slow.test."],         # never answered (a timeout)
            "authentic": ["mail.test."]}    # answered with the AD bit (as if validated)
A name with no record of any type is NXDOMAIN; one with records of other types only, NODATA.

Usage: dnsserver.py ZONE_FILE [--port N]   (port 0, the default: any free port)
"""
import errno
import json
import os
import socketserver
import sys
import threading

from dnslib import DNSRecord, QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSServer, DNSLogger


class ZoneResolver(BaseResolver):
    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.lock = threading.Lock()
        self.load()

    def load(self):
        mtime = os.stat(self.path).st_mtime_ns
        if mtime == self.mtime:
            return
        with open(self.path) as f:
            zone = json.load(f)
        records = []
        for name, rtype, ttl, rdata in zone.get("records", []):
            records.extend(RR.fromZone(f"{name} {ttl} IN {rtype} {rdata}"))
        self.records = records
        self.servfail = {n.lower() for n in zone.get("servfail", [])}
        self.drop = {n.lower() for n in zone.get("drop", [])}
        self.authentic = {n.lower() for n in zone.get("authentic", [])}
        self.mtime = mtime

    def resolve(self, request, handler):
        with self.lock:
            self.load()
            qname = request.q.qname
            qtype = QTYPE[request.q.qtype]
            print(f"query {str(qname).lower()} {qtype}", flush=True)
            reply = request.reply()
            name = str(qname).lower()
            reply.header.ad = 1 if name in self.authentic else 0
            if name in self.drop:
                return None  # dnslib sends nothing
            if name in self.servfail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            same_name = [rr for rr in self.records if str(rr.rname).lower() == name]
            if not same_name:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            for rr in same_name:
                if QTYPE[rr.rtype] == qtype:
                    reply.add_answer(rr)
            return reply


class QuietLogger(DNSLogger):
    def __init__(self):
        super().__init__(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)


def main():
    # A dropped query raises inside dnslib's handler on purpose; no traceback for it.
    socketserver.BaseServer.handle_error = lambda self, request, client_address: None
    path = sys.argv[1]
    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 0
    resolver = ZoneResolver(path)
    # UDP on a free port, then TCP on the same one; when another test holds that port for TCP,
    # both are tried again on a new one (a port given on the command line is tried once).
    for attempt in range(20):
        udp = DNSServer(resolver, port=port, address="127.0.0.1", logger=QuietLogger())
        chosen = udp.server.server_address[1]
        try:
            tcp = DNSServer(resolver, port=chosen, address="127.0.0.1", tcp=True,
                            logger=QuietLogger())
        except OSError as e:
            udp.server.server_close()
            if e.errno != errno.EADDRINUSE or port != 0 or attempt == 19:
                raise
            continue
        break
    udp.start_thread()
    tcp.start_thread()
    print(f"port={chosen}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
