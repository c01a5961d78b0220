#!/usr/bin/python3
"""Reads a delivery status notification the way a mail client does (Python's email package)
and prints what it found, one fact a line, for tests/unit/dsn_test.cc to check:

  type multipart/report                      the top-level content type
  report-type delivery-status                its report-type parameter
  part <n> <content type>                    each part, in order
  header <Name>: <value>                     the top-level headers
  message <Field>: <value>                   the per-message fields of the delivery status
  recipient <i> <Field>: <value>             the fields of recipient i (from 0)
  original-body <text>                       with message/rfc822, the returned message's body
  defects <n>                                what the parser found wrong (0 for a sound one)
  longest-line <n>                           the longest line in octets, CRLF not counted

Usage: read_dsn.py FILE
"""
import email
import email.policy
import sys

raw = open(sys.argv[1], "rb").read()
lines = raw.split(b"\r\n")
print("longest-line", max(len(l) for l in lines))
print("bare-lf", raw.count(b"\n") - raw.count(b"\r\n"))
msg = email.message_from_bytes(raw, policy=email.policy.compat32)
defects = len(msg.defects)
print("type", msg.get_content_type())
print("report-type", msg.get_param("report-type"))
for name, value in msg.items():
    print("header", f"{name}: {value}")
for i, part in enumerate(msg.get_payload()):
    defects += len(part.defects)
    print("part", i, part.get_content_type())
    if part.get_content_type() == "message/delivery-status":
        blocks = part.get_payload()
        for name, value in blocks[0].items():
            print("message", f"{name}: {value}")
        for r, block in enumerate(blocks[1:]):
            for name, value in block.items():
                print("recipient", r, f"{name}: {' '.join(value.split())}")
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()[0]
        print("original-body", inner.get_payload().strip())
print("defects", defects)
