"""Keeps the layers of DESIGN.md: reads every `#include "..."` of the source tree and fails,
naming file, line and rule, on an arrow that runs back up.

  runtime    core/*.{h,cc}             includes only the runtime
  protocols  core/smtp, core/tls,      the runtime and the protocols
             core/auth, core/dns,
             core/dkim, core/http, core/inject,
             core/proxy, core/redis
  modules    core/server, queue/,      the runtime, the protocols and the modules below them:
             delivery/, metrics/       queue/ never delivery/; metrics/ no other module; no
                                       module the daemon
  daemon     core/daemon/              anything (the only place that includes every module)
bench/ and tests/ may include anything but are not included by the product.

Usage: check_layers.py [REPO]   (a self-test with --self-test)
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)

PROTOCOLS = ("core/smtp/", "core/tls/", "core/auth/", "core/dns/", "core/dkim/", "core/http/",
             "core/inject/", "core/proxy/", "core/redis/")


def room(path):
    """The layer a repository path belongs to."""
    if path.startswith("core/daemon/"):
        return "daemon"
    if path.startswith(PROTOCOLS):
        return "protocol"
    if path.startswith("core/server/"):
        return "server"
    for module in ("queue", "delivery", "metrics", "bench", "tests"):
        if path.startswith(module + "/"):
            return module
    if path.startswith("core/"):
        return "runtime"
    return "other"


# Which rooms each room may include.
ALLOWED = {
    "runtime": {"runtime"},
    "protocol": {"runtime", "protocol"},
    "queue": {"runtime", "queue"},
    "metrics": {"runtime", "metrics"},
    "delivery": {"runtime", "protocol", "queue", "delivery"},
    "server": {"runtime", "protocol", "queue", "server"},
    "daemon": {"runtime", "protocol", "queue", "delivery", "metrics", "server", "daemon"},
    "bench": {"runtime", "protocol", "queue", "delivery", "metrics", "server", "daemon",
              "bench"},
    "tests": {"runtime", "protocol", "queue", "delivery", "metrics", "server", "daemon",
              "bench", "tests"},
}


def violations(files):
    """files: {path: text}. Yields (path, line number, included, why)."""
    for path, text in sorted(files.items()):
        src = room(path)
        if src not in ALLOWED:
            continue
        for m in INCLUDE.finditer(text):
            target = m.group(1)
            dst = room(target)
            if dst == "other":
                continue  # a generated or third-party header
            line = text.count("\n", 0, m.start()) + 1
            if dst not in ALLOWED[src]:
                yield path, line, target, f"{src} may not include {dst}"
            elif target == "core/daemon/config.h" and src != "daemon" and src != "tests":
                yield path, line, target, "only the daemon reads its Config"


def read_tree(repo):
    files = {}
    for top in ("core", "queue", "delivery", "metrics", "bench", "tests"):
        for dirpath, _, names in os.walk(os.path.join(repo, top)):
            for n in names:
                if n.endswith((".h", ".cc", ".cc.in")):
                    full = os.path.join(dirpath, n)
                    with open(full, encoding="utf-8", errors="replace") as f:
                        files[os.path.relpath(full, repo)] = f.read()
    return files


def self_test():
    # The rules themselves: each forbidden arrow is caught, each allowed one passes.
    bad = {
        "core/reactor.cc": '#include "queue/spool.h"\n',
        "core/smtp/x.cc": '#include "core/server/submission.h"\n',
        "queue/spool.cc": '#include "delivery/delivery.h"\n',
        "metrics/exporter.cc": '#include "delivery/stats.h"\n',
        "delivery/pool.cc": '#include "core/daemon/config.h"\n',
        "core/server/s.cc": '#include "delivery/job.h"\n',
    }
    good = {
        "core/daemon/main.cc": '#include "delivery/delivery.h"\n#include "metrics/exporter.h"\n',
        "delivery/pool.cc": '#include "core/smtp/reply.h"\n#include "queue/spool.h"\n',
        "core/server/s.cc": '#include "queue/spool.h"\n#include "core/tls/tls.h"\n',
        "tests/unit/x.cc": '#include "core/daemon/config.h"\n',
    }
    found = {v[0] for v in violations(bad)}
    assert found == set(bad), f"missed: {set(bad) - found}"
    assert not list(violations(good)), list(violations(good))
    print("self-test: every forbidden arrow caught, every allowed one passes")


def main(argv):
    if argv and argv[0] == "--self-test":
        self_test()
        return 0
    repo = argv[0] if argv else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = read_tree(repo)
    product = [p for p in files if room(p) not in ("bench", "tests")]
    if not product:
        print(f"no sources found under {repo}")
        return 1
    bad = list(violations(files))
    for path, line, target, why in bad:
        print(f"{path}:{line}: #include \"{target}\": {why}")
    print(f"{len(files)} files, {sum(len(INCLUDE.findall(t)) for t in files.values())} includes,"
          f" {len(bad)} arrows against the layers")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
