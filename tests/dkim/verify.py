#!/usr/bin/python3
"""Verifies the DKIM-Signature fields of a message with Debian's python3-dkim (dkimpy, RFC 6376
and RFC 8463), an implementation independent of spate's: the verifier that the unit tests
(tests/unit/dkim_test.cc) and the integration tests (tests/integration/test_dkim.py) trust.
No DNS: the key records come from the arguments.

  verify.py MESSAGE TXT          every signature against the one key record TXT
                                 ("v=DKIM1; k=rsa; p=<base64 SPKI>" or "v=DKIM1; k=ed25519;
                                 p=<base64 of the 32-octet key>", RFC 8463 §4.2): prints "ok"
                                 and exits 0 when there is at least one and all verify, else
                                 prints why the first one fails and exits 1
  verify.py --all MESSAGE KEYS   KEYS: a JSON file {"<s>._domainkey.<d>": "<record>", ...};
                                 prints a JSON list [[d, s, a, ok, why], ...], one per
                                 signature, top first; exit 0 when there is at least one and
                                 all verify, else 1

Run it with /usr/bin/python3: python3-dkim is installed for Debian's interpreter.
Exit 2: usage, or a file that cannot be read.
"""
import json
import logging
import re
import sys

import dkim
import dkim.util


class Reasons(logging.Handler):
    """Keeps what dkimpy logs, so that a failure can say why."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def signature_tags(message):
    """The tags of each DKIM-Signature field, top first (d, s, a as text; "" when absent)."""
    d = dkim.DKIM(message)
    out = []
    for name, value in d.headers:
        if name.lower() != b"dkim-signature":
            continue
        try:
            tags = dkim.util.parse_tag_value(re.sub(rb"\r\n", b"", value))
        except Exception:  # noqa: BLE001 - a malformed field is reported, not fatal
            tags = {}
        out.append(tuple(tags.get(k, b"").decode("latin-1") for k in (b"d", b"s", b"a")))
    return out


def verify_one(message, idx, lookup):
    """(ok, why) for signature `idx` of `message`; `lookup(name)` gives the TXT record."""
    reasons = Reasons()
    logger = logging.getLogger(f"verify.{idx}")
    logger.handlers = [reasons]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False

    def dnsfunc(name, timeout=5):
        record = lookup(name.decode("ascii", "replace").rstrip("."))
        return record.encode("ascii") if record is not None else None

    try:
        ok = dkim.DKIM(message, logger=logger).verify(idx=idx, dnsfunc=dnsfunc)
    except dkim.DKIMException as e:
        return False, str(e)
    if ok:
        return True, ""
    mismatch = [line for line in reasons.lines if "mismatch" in line]
    return False, mismatch[-1] if mismatch else "the signature (b=) does not verify"


def main(argv):
    if len(argv) == 3 and argv[0] == "--all":
        path, keys_path = argv[1], argv[2]
        try:
            with open(keys_path) as f:
                records = json.load(f)
        except (OSError, ValueError) as e:
            print(f"verify.py: {e}", file=sys.stderr)
            return 2
        lookup = records.get
    elif len(argv) == 2 and not argv[0].startswith("--"):
        path, txt = argv[0], argv[1]
        lookup = lambda name: txt  # noqa: E731 - one record for every name
        records = None
    else:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(path, "rb") as f:
            message = f.read()
    except OSError as e:
        print(f"verify.py: {e}", file=sys.stderr)
        return 2
    tags = signature_tags(message)
    results = []
    for idx, (d, s, a) in enumerate(tags):
        ok, why = verify_one(message, idx, lookup)
        results.append([d, s, a, ok, why])
    all_ok = bool(results) and all(r[3] for r in results)
    if records is not None:
        print(json.dumps(results))
    elif all_ok:
        print("ok")
    elif not results:
        print("no DKIM-Signature field")
    else:
        d, s, a, _, why = next(r for r in results if not r[3])
        print(f"d={d} s={s} a={a}: {why}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
