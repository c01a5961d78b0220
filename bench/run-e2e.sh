#!/usr/bin/env bash
# The end-to-end benchmark in one command (bench/README.md): spate-sink, the MTA under test
# (spate with a durable spool in a temporary directory; Postfix from Debian's package on a
# temporary queue; Haraka from npm, in memory), spate-blast into it; one JSON summary on stdout,
# plots in bench/results/.
#   bench/run-e2e.sh                       one scenario: 2 KB, direct + spate + Postfix + Haraka
#   bench/run-e2e.sh --suite full          the README's measurements
#   bench/run-e2e.sh --help                every flag
# Binaries come from build/ (make bench builds them) unless --build DIR says otherwise.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Debian's python3 (the driver uses the standard library only).
py=/usr/bin/python3
[ -x "$py" ] || py="$(command -v python3)"
exec "$py" "$here/e2e.py" "$@"
