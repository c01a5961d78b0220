#!/usr/bin/env bash
# Installs spate's build and test dependencies from Debian 12's archive.
# Idempotent: when every package is present it only checks and returns (no apt-get update).
set -euo pipefail

packages=(
  # build
  cmake ninja-build g++ make pkg-config python3
  liburing-dev android-libboringssl-dev librocksdb-dev prometheus-cpp-dev
  libtomlplusplus-dev
  # the records writer's rotated files (zstd); JSON read back by the tests (and, later, tracking)
  libzstd-dev nlohmann-json3-dev
  # HTTP injection: {{ name }} substitution per recipient (header-only mustache)
  libkainjow-mustache-dev
  # bounce classification: RE2, linear-time regexes over hostile reply text
  libre2-dev
  # DNS for MX routing: libunbound (Debian's is built with nettle, no OpenSSL beside BoringSSL)
  libunbound-dev
  # [cluster]: hiredis for the Redis protocol (Debian's 0.14 links no OpenSSL)
  libhiredis-dev
  # the daemon's allocator: jemalloc (glibc's malloc was a tenth of its CPU at 2 KB messages)
  libjemalloc-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # fuzzing (tests/fuzz, the fuzz preset): clang and its libFuzzer/sanitizer runtimes
  clang-14 libclang-rt-14-dev
  # test peers: Postfix's smtp-sink/smtp-source, swaks, Python's smtplib
  postfix swaks libnet-ssleay-perl libio-socket-ssl-perl curl procps
  # the DNS server the MX tests start on loopback (python3-dnslib)
  python3-dnslib
  # DANE tests' signed zones (tests/dns/dnssec.py): nsd on its own loopback port, ldns signs,
  # unbound-host checks, unbound validates in front for [dns] trust_ad (the tests start their
  # own on a free port); dns-root-data: the root trust anchor of the production config
  nsd ldnsutils unbound-host unbound dns-root-data
  # scale-out tests (issue 15): HAProxy in front of the nodes, Redis for the shared limits
  # (the tests start their own on loopback)
  haproxy redis-server
  # an independent DKIM verifier for spate's signatures (tests/dkim/verify.py, dkimpy), and the
  # openssl command that makes the tests' keys
  python3-dkim openssl
  # the zstd command: tests/integration/test_accounting.py decompresses rotated records files
  zstd
  # an independent bounce parser that must read spate's DSNs (tests/dsn, Sisimai)
  libsisimai-perl
  # benchmark plots (bench/plot.py)
  gnuplot-nox
  # line coverage reports (make coverage)
  gcovr
  # a real Prometheus (and promtool) for tests/integration/test_deploy.py: it scrapes spate and
  # runs every query of deploy/grafana's dashboard and deploy/prometheus's alerting rules (the
  # test starts its own on a free loopback port; Debian's prometheus.service, on :9090 where
  # systemd runs, is not used: `systemctl disable --now prometheus` if you do not want it)
  prometheus
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Postfix asks how it should be configured; "No configuration" keeps it from starting a
# system MTA. We only use its smtp-sink and smtp-source binaries.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
