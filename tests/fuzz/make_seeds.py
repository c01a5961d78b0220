#!/usr/bin/env python3
"""Writes the hand-written seed files of tests/fuzz/corpus/<target>/seed-*.

Each seed is a realistic conversation (or path, or reply stream) in the input layout the
target's header comment describes. Run it after changing a layout; files the fuzzer found
(hex names, from -merge=1) and minimized crashers (crash-*) are left alone.

    python3 tests/fuzz/make_seeds.py
"""
import base64
import os

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def b64(s):
    return base64.b64encode(s.encode()).decode()


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("latin-1"))


def stream(flags, sizes, text):
    """[flags] [3 chunk sizes] payload, as fuzz_util.h describes."""
    return bytes([flags, *sizes]) + (text if isinstance(text, bytes) else text.encode("latin-1"))


# --- server_session: the client's bytes ---------------------------------------------------------
# flags:  0x01 starttls 0x02 auth 0x04 auth_plaintext 0x08 implicit_tls 0x10 client_may_relay
#         0x20 tight limits 0x40 timeout at the end 0x80 lazy spool
# flags2: 0x01 pregreet 0x02 bare LF normalised 0x04 no added headers 0x08 lazy AUTH check


def session(flags, sizes, text, flags2=0):
    return bytes([flags, flags2]) + stream(0, sizes, text)[1:]


WHOLE, OCTETS, RAGGED = (0, 0, 0), (1, 1, 1), (7, 13, 2)
BODY = "From: a@example.net\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello.\r\n..dot\r\n"
S = "server_session"
write(S, "plain", session(0, WHOLE,
      "EHLO client.example.net\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n"
      "DATA\r\n" + BODY + ".\r\nQUIT\r\n"))
write(S, "pipelined-two", session(0x10, RAGGED,
      "EHLO c.example.net\r\n"
      "MAIL FROM:<a@example.net> SIZE=120 BODY=8BITMIME\r\nRCPT TO:<b@example.com>\r\n"
      "RCPT TO:<c@example.org>\r\nDATA\r\n" + BODY + ".\r\n"
      "MAIL FROM:<> \r\nRCPT TO:<Postmaster>\r\nDATA\r\n.\r\nRSET\r\nQUIT\r\n"))
write(S, "helo-misc-lf", session(0, OCTETS,
      "helo c\nnoop hi\nvrfy bob\nvrfy\nhelp\nrset\nmail from: <a@[192.0.2.1]>\n"
      "rcpt to: <\"john doe\"@[IPv6:2001:db8::1]>\ndata\nx\r\n.\r\nquit\n"))
write(S, "bdat", session(0, RAGGED,
      "EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\n"
      "BDAT 14\r\nSubject: x\r\n\r\nBDAT 6 LAST\r\nHello\nQUIT\r\n"))
write(S, "starttls-injection", session(0x01 | 0x02, WHOLE,
      "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<b@example.com>\r\n"
      "EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
      + BODY + ".\r\nQUIT\r\n"))
write(S, "auth-plain", session(0x02 | 0x04, (30, 5, 0),
      "EHLO c\r\nAUTH PLAIN " + b64("\0alice\0s3cret") + "\r\n"
      "AUTH PLAIN\r\n" + b64("admin\0bob\0pw") + "\r\n"
      "MAIL FROM:<alice@example.net> AUTH=<>\r\nRCPT TO:<z@example.org>\r\nDATA\r\n"
      + BODY + ".\r\nQUIT\r\n"))
write(S, "auth-login", session(0x02 | 0x04 | 0x10, RAGGED,
      "EHLO c\r\nAUTH LOGIN\r\n" + b64("alice") + "\r\n" + b64("wrong") + "\r\n"
      "AUTH LOGIN " + b64("alice") + "\r\n" + b64("right") + "\r\n"
      "AUTH LOGIN\r\n*\r\nMAIL FROM:<alice@example.net>\r\nRCPT TO:<x@example.org>\r\n"
      "DATA\r\nhi\r\n.\r\nQUIT\r\n"))
write(S, "auth-over-tls", session(0x01 | 0x02, (4, 4, 9),
      "EHLO c\r\nAUTH PLAIN " + b64("\0a\0b") + "\r\nSTARTTLS\r\nEHLO c\r\n"
      "AUTH PLAIN " + b64("\0a\0b") + "\r\nMAIL FROM:<a@example.net>\r\n"
      "RCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n"))
write(S, "smuggling", session(0, WHOLE,
      "EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
      "Subject: s\r\n\r\nx\n.\nMAIL FROM:<e@example.net>\n"
      "y\r.\r\nRCPT TO:<e@example.com>\r\n"
      "z\n.\r\nDATA\r\n"
      "w\r\n.\rX\r\n"
      "v\r\n.\n\r\n.\r\nQUIT\r\n"))
write(S, "long-lines", session(0x20, (200, 9, 0),
      "EHLO " + "h" * 600 + "\r\nEHLO c\r\nMAIL FROM:<" + "l" * 70 + "@example.net>\r\n"
      "MAIL FROM:<a@" + "d" * 70 + ".example>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
      + "t" * 300 + "\r\n.\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
      + ("0123456789" * 15 + "\r\n") * 16 + ".\r\nQUIT\r\n"))
write(S, "limits-errors", session(0x20, RAGGED,
      "EHLO c\r\nMAIL FROM:<a@example.net> SIZE=99999999\r\nMAIL FROM:<a@example.net> SIZE=x\r\n"
      "MAIL FROM:<a@example.net>\r\n"
      + "".join("RCPT TO:<r%d@example.com>\r\n" % i for i in range(7))
      + "DATA extra\r\nFOO\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:bad\r\nxyz\r\nQUIT\r\n"))
write(S, "dsn-smtputf8", session(0x10, WHOLE,
      "EHLO c\r\nMAIL FROM:<a@example.net> RET=HDRS ENVID=QQ+2Bx SMTPUTF8\r\n"
      "RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.com\r\n"
      "RCPT TO:<j\xc3\xb6rg@b\xc3\xbccher.example> NOTIFY=NEVER\r\nDATA\r\n"
      "Subject: \xc3\xa9t\xc3\xa9\r\n\r\n8bit \xff\r\n.\r\nQUIT\r\n"))
write(S, "mt-priority", session(0x10, RAGGED,
      "EHLO c\r\nMAIL FROM:<a@example.net> MT-PRIORITY=-4\r\nRCPT TO:<b@example.com>\r\n"
      "DATA\r\nx\r\n.\r\nMAIL FROM:<a@example.net> MT-PRIORITY=10\r\n"
      "MAIL FROM:<a@example.net> MT-PRIORITY=+9 MT-PRIORITY=1\r\nQUIT\r\n"))
write(S, "lazy-commit-pipelined", session(0x80, (60, 30, 0),
      "EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n"
      "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\ny\r\n.\r\n"
      "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nz\r\n.\r\nQUIT\r\n"))
write(S, "timeout-while-committing", session(0x80 | 0x40, WHOLE,
      "EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n"
      "NOOP\r\n"))
write(S, "implicit-tls-auth", session(0x08 | 0x02, WHOLE,
      "EHLO c\r\nSTARTTLS\r\nAUTH PLAIN =\r\nAUTH LOGIN\r\n" + b64("u") + "\r\n" + b64("p")
      + "\r\nQUIT\r\n"))

write(S, "pregreet", session(0, (6, 0, 0),
      "EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n", 0x01))
write(S, "bare-lf-normalise", session(0, (40, 3, 0),
      "EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
      "Subject: lf\n\nbare lf\nbare\rcr\r\n.\n.\r\nBDAT 9 LAST\r\nQUIT\r\n", 0x02 | 0x04))
write(S, "bdat-chunks", session(0x20, (11, 0, 5),
      "EHLO c\r\nMAIL FROM:<a@example.net> BODY=BINARYMIME\r\nRCPT TO:<b@example.com>\r\n"
      "BDAT 23\r\nSubject: chunk\r\n\r\n.\r\nBDAT 0 LAST\r\n"
      "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.com>\r\nBDAT 5000 LAST\r\n"
      + "z" * 300 + "\r\nBDAT x\r\nQUIT\r\n"))
write(S, "lazy-auth-pipelined", session(0x02 | 0x04, (25, 25, 0),
      "EHLO c\r\nAUTH PLAIN " + b64("\0u\0p") + "\r\nMAIL FROM:<u@example.net>\r\n"
      "RCPT TO:<far@example.org>\r\nDATA\r\nx\r\n.\r\nAUTH LOGIN " + b64("u") + "\r\n"
      + b64("p") + "\r\nQUIT\r\n", 0x08))
write(S, "relay-attempts", session(0, RAGGED,
      "EHLO c\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<x@example.org>\r\n"
      "RCPT TO:<x%y@EXAMPLE.com>\r\nRCPT TO:<@example.com:x@example.org>\r\n"
      "RCPT TO:<\"x@y\"@example.com>\r\nRCPT TO:<x!y@example.com>\r\nRCPT TO:<ok@Example.COM>\r\n"
      "RCPT TO:<x@[192.0.2.1]>\r\nRCPT TO:<postmaster>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n"))

# --- address: [flags] path; 0x01 forward ------------------------------------------------------
A = "address"
for i, (fwd, path) in enumerate([
    (0, "<>"),
    (0, "<a@example.net>"),
    (1, "<Postmaster>"),
    (1, "<@relay.example,@b.example:user@Example.COM>"),
    (1, "<\"john \\\"q\\\" doe\"@example.com> NOTIFY=NEVER"),
    (0, "<a.b+tag@[192.0.2.1]>"),
    (1, "<x@[IPv6:2001:db8::ffff:192.0.2.1]>"),
    (1, "<x@[IPv6:2001:db8:0:0:0:0:0:1]>"),
    (0, "<" + "l" * 64 + "@" + ("d" * 63 + ".") * 3 + "com>"),
    (1, "<j\xc3\xb6rg@example.com>"),
    (3, "<j\xc3\xb6rg@b\xc3\xbccher.example>"),
    (2, "<\"\xe2\x82\xac uro\"@\xf0\x9f\x98\x80.example> SMTPUTF8"),
    (2, "<bad\xc0\xafutf8@example.com>"),
    (3, "<x@[IPv6:::1]>"),
    (0, "<a@-bad-.example>"),
    (1, "<a..b@example.com>"),
    (0, "<a@example.com> SIZE=100"),
]):
    write(A, "%02d" % i, bytes([fwd]) + path.encode("latin-1"))

# --- reply_parser: [flags] [3 chunk sizes] server bytes; flags 0x01 small limits -----------------
R = "reply_parser"
write(R, "greeting-ehlo", stream(0, RAGGED,
      "220 mx.example.com ESMTP\r\n250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
      "250-8BITMIME\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 SMTPUTF8\r\n"))
write(R, "pipelined", stream(0, WHOLE,
      "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <x@example.com>: User unknown\r\n354 End data\r\n"
      "250 2.0.0 Ok: queued as 4F2\r\n221 2.0.0 Bye\r\n"))
write(R, "enhanced-multiline", stream(0, OCTETS,
      "452-4.5.3 Too many\r\n452-4.5.3 recipients\r\n452 4.5.3 try later\r\n"
      "554-5.7.1 first\r\n554-no code\r\n554 5.7.1 last\r\n"))
write(R, "bare-lf-code-only", stream(0, (2, 1, 3), "220\n250-x\n250\n421 4.4.2 bye\n"))
write(R, "bad-enhanced", stream(0, WHOLE,
      "250 5.1.1 wrong class\r\n250 2.1 short\r\n250 2.1234.1 long\r\n250 2.0.0\r\n"))
write(R, "mixed-codes", stream(0, WHOLE, "250-a\r\n251 b\r\n"))
write(R, "malformed", stream(0, WHOLE, "250 ok\r\nhello there\r\n250 never\r\n"))
write(R, "one-digit-reply", stream(0, WHOLE, "1\r\n"))
write(R, "too-long-line", stream(1, (50, 50, 0), "250 " + "x" * 70 + "\r\n"))
write(R, "too-many-lines", stream(1, WHOLE, "250-a\r\n" * 5 + "250 b\r\n"))
write(R, "cr-split", stream(0, (5, 1, 1), "250 ok\r\r\n250 a\rb\r\n"))
write(R, "partial", stream(0, OCTETS, "250 2.0.0 Ok\r\n354 go ahead"))

# --- client_session: [flags] [3 chunk sizes] server turns separated by NUL ---------------------
# flags: 0x03 recipients, 0x04 null sender, 0x08 size+8bit, 0x10 abort at end,
#        0x60 transactions-1, 0x80 vary bodies
C = "client_session"
EHLO_PIPE = "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250 OK\r\n"
EHLO_PLAIN = "250-mx.example.com\r\n250 SIZE\r\n"


def turns(*t):
    return "\0".join(t)


write(C, "pipelined-one", stream(0x02 | 0x08, WHOLE, turns(
      "220 mx ESMTP\r\n", EHLO_PIPE,
      "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n",
      "250 2.0.0 Ok: queued as A1\r\n", "221 2.0.0 Bye\r\n")))
write(C, "lockstep", stream(0x03, OCTETS, turns(
      "220 mx ESMTP\r\n", EHLO_PLAIN, "250 Ok\r\n", "250 Ok\r\n", "550 5.1.1 unknown\r\n",
      "250 Ok\r\n", "354 go\r\n", "250 queued\r\n", "221 Bye\r\n")))
write(C, "helo-fallback", stream(0x01, RAGGED, turns(
      "220 old ESMTP\r\n", "502 5.5.1 what?\r\n", "250 old\r\n", "250 ok\r\n", "250 ok\r\n",
      "354 go\r\n", "250 ok\r\n", "221 bye\r\n")))
write(C, "greeting-refused", stream(0x01, WHOLE, turns("554 5.7.1 go away\r\n", "221 bye\r\n")))
write(C, "partial-rcpts", stream(0x03 | 0x20, RAGGED, turns(
      "220 mx\r\n", EHLO_PIPE,
      "250 2.1.0 Ok\r\n450 4.2.0 greylisted\r\n250 2.1.5 Ok\r\n550 5.1.1 no\r\n354 go\r\n",
      "451 4.3.0 try again\r\n",
      "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n",
      "250 2.0.0 queued\r\n", "221 2.0.0 bye\r\n")))
write(C, "mail-refused", stream(0x02 | 0x04 | 0x20, WHOLE, turns(
      "220 mx\r\n", EHLO_PIPE,
      "550 5.7.1 sender rejected\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"
      "503 need MAIL\r\n",
      "250 reset\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n",
      "250 queued\r\n", "221 bye\r\n")))
write(C, "no-valid-rcpts", stream(0x02, WHOLE, turns(
      "220 mx\r\n", EHLO_PIPE,
      "250 Ok\r\n550 no\r\n550 no\r\n354 go anyway\r\n", "250 empty\r\n", "221 bye\r\n")))
write(C, "data-refused", stream(0x01, WHOLE, turns(
      "220 mx\r\n", EHLO_PIPE, "250 Ok\r\n250 Ok\r\n554 5.5.1 no valid recipients\r\n",
      "221 bye\r\n")))
write(C, "421-midway", stream(0x03, (3, 7, 0), turns(
      "220 mx\r\n", EHLO_PIPE, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n421 4.3.2 shutting down\r\n",
      "250 late\r\n")))
write(C, "malformed-reply", stream(0x02 | 0x10, WHOLE, turns(
      "220 mx\r\n", EHLO_PIPE, "250 Ok\r\nhello\r\n")))
write(C, "2xx-to-data", stream(0x01, WHOLE, turns(
      "220 mx\r\n", EHLO_PLAIN, "250 Ok\r\n", "250 Ok\r\n", "250 data?\r\n")))
write(C, "3xx-to-mail", stream(0x01, WHOLE, turns(
      "220 mx\r\n", EHLO_PLAIN, "354 what\r\n")))
write(C, "abort-in-flight", stream(0x03 | 0x10, WHOLE, turns(
      "220 mx\r\n", EHLO_PIPE, "250 Ok\r\n250 Ok\r\n")))
write(C, "reuse-bodies-lf", stream(0x01 | 0x60 | 0x80, RAGGED, turns(
      "220-mx\n220 welcome\n", "250-mx\n250-pipelining\n250 8bitmime\n",
      "250 ok\n250 ok\n354 go\n", "250 one\n",
      "250 ok\n250 ok\n354 go\n", "250 two\n",
      "250 ok\n250 ok\n354 go\n", "250 three\n",
      "250 ok\n250 ok\n354 go\n", "250 four\n", "221 bye\n")))
write(C, "zero-rcpts", stream(0x00 | 0x20, WHOLE, turns("220 mx\r\n", EHLO_PIPE, "221 bye\r\n")))
write(C, "unasked-reply", stream(0x01, WHOLE, turns(
      "220 mx\r\n", EHLO_PLAIN,
      "250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n250 unasked\r\n")))

# pipeline_next (0x80 of the first chunk-size octet): the next transaction behind the end of data
NEXT = 0x80


def next_stream(flags, sizes, text):
    return stream(flags, (sizes[0] | NEXT, sizes[1], sizes[2]), text)


R3 = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n"  # one recipient
R4 = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n"  # two
H503 = "503 Bad sequence of commands - pipelined after end of DATA\r\n"  # Haraka 3.3
write(C, "pipeline-next-two", next_stream(0x02 | 0x08 | 0x20, WHOLE, turns(
      "220 mx ESMTP\r\n", EHLO_PIPE, R4,
      "250 2.0.0 Ok: queued as A1\r\n" + R4, "250 2.0.0 Ok: queued as A2\r\n", "221 2.0.0 Bye\r\n")))
write(C, "pipeline-next-four", next_stream(0x01 | 0x60 | 0x80, RAGGED, turns(
      "220 mx ESMTP\r\n", EHLO_PIPE, R3,
      "250 2.0.0 one\r\n" + R3, "250 2.0.0 two\r\n" + R3, "250 2.0.0 three\r\n" + R3,
      "250 2.0.0 four\r\n", "221 bye\r\n")))
write(C, "pipeline-next-503", next_stream(0x01 | 0x40, WHOLE, turns(
      "220 mx ESMTP\r\n", EHLO_PIPE, R3,
      "250 2.0.0 one\r\n" + H503 * 3, R3, "250 2.0.0 two\r\n", R3, "250 2.0.0 three\r\n",
      "221 bye\r\n")))
write(C, "pipeline-next-503-octets", next_stream(0x02 | 0x20, OCTETS, turns(
      "220 mx ESMTP\r\n", EHLO_PIPE,
      R4 + "554 5.7.1 spam\r\n" + H503 * 4 + R4 + "250 2.0.0 two\r\n", "221 bye\r\n")))
write(C, "pipeline-next-sync-abort", next_stream(0x01 | 0x20 | 0x10, OCTETS, turns(
      "220 mx ESMTP\r\n", EHLO_PIPE, R3,
      "250 2.0.0 Ok\r\n554 5.5.0 Error: SMTP protocol synchronization\r\n")))
write(C, "pipeline-next-421", next_stream(0x03 | 0x20, (3, 7, 0), turns(
      "220 mx\r\n", EHLO_PIPE,
      "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n450 4.2.0 greylisted\r\n250 2.1.5 Ok\r\n354 go\r\n",
      "421 4.3.2 shutting down\r\n", "250 late\r\n")))
write(C, "pipeline-next-size-refused", next_stream(0x01 | 0x60 | 0x80, WHOLE, turns(
      "220 mx\r\n", "250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n", R3,
      "250 2.0.0 empty\r\n" + R3, "250 2.0.0 dot\r\n", "221 bye\r\n")))
write(C, "pipeline-next-sender-refused", next_stream(0x01 | 0x40 | 0x04, WHOLE, turns(
      "220 mx\r\n", EHLO_PIPE, R3,
      "250 2.0.0 Ok\r\n550 5.7.1 sender blocked\r\n503 5.5.1 no MAIL\r\n503 5.5.1 no RCPT\r\n",
      "250 reset\r\n" + R3, "250 2.0.0 three\r\n", "221 bye\r\n")))
write(C, "pipeline-next-starttls", next_stream(0x02 | 0x20, RAGGED, turns(
      "220 mx\r\n", "250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n", "220 2.0.0 go ahead\r\n",
      EHLO_PIPE, R4, "250 2.0.0 one\r\n" + R4, "250 2.0.0 two\r\n", "221 bye\r\n")))

# --- suppression_csv: an operator's CSV, whole -------------------------------------------------
S = "suppression_csv"
write(S, "export", "address,since,class,reason\r\n"
      "bob@example.com,2026-12-01T16:42:33Z,InvalidRecipient,"
      "550 5.1.1 <bob@example.com>: user unknown\r\n"
      '"""odd,local""@example.com",2026-01-02T03:04:05.120Z,BadDomain,'
      '"550 5.1.2, ""no"" such domain\r\nsecond line"\r\n')
write(S, "lenient", "A@Example.COM\nb@example.com,,\n"
      "c@example.com, 2026-12-01 16:42:33+02:00 , Manual ,  spaced\n\n")
write(S, "concatenated", "address,since,class,reason\na@x.example\n"
      "address,since,class,reason\nb@x.example,2024-02-29T23:59:59.999Z\n")
write(S, "bad-date", "address\na@example.com,2026-02-29T00:00:00Z\n")
write(S, "unclosed", 'a@example.com,,,"unclosed\r\nb@example.com\r')
write(S, "fields", "address,since,class,reason\na@x,,,r,extra\n")

# --- bounce_rules: a rules document ------------------------------------------------------------
# The shipped rules (read from delivery/bounce_rules.toml, so rerunning keeps the seed current),
# a small valid document, an inline table, and refused ones (unknown class, bad expression,
# a value of the wrong type).
R = "bounce_rules"
with open(os.path.join(os.path.dirname(CORPUS), "..", "..", "delivery", "bounce_rules.toml"),
          encoding="utf-8") as f:
    write(R, "shipped", f.read().encode("utf-8"))
write(R, "small", "[rules]\nInvalidRecipient = ['user unknown', '^\\d{3}[ -][45]\\.1\\.1\\b']\n"
      "SpamBlock = ['spamhaus', 'blocked using']\nPolicyRelated = ['^\\d{3}[ -][45]\\.7\\.']\n")
write(R, "inline", "rules = { BadDomain = ['nxdomain', 'null mx'], MessageExpired = ['expired'] }\n")
write(R, "empty-rules", "[rules]\n")
write(R, "unknown-class", "[rules]\nInvalidRecipients = ['x']\n")
write(R, "bad-regex", "[rules]\nSpamBlock = ['ok', '(unclosed', 'a{2,1}', '(a)\\1']\n")
write(R, "wrong-types", "[rules]\nSpamBlock = 'x'\nQuotaIssues = [1, ['y']]\n[other]\nk = 1\n")

# --- bounce_class: [code: 2 octets big-endian] enhanced NUL text --------------------------------
B = "bounce_class"


def reply(code, enhanced, text):
    return bytes([code >> 8, code & 0xff]) + enhanced.encode() + b"\0" + text.encode("latin-1")


write(B, "gmail-nosuchuser", reply(550, "5.1.1",
      "The email account that you tried to reach does not exist. Please try\n"
      "double-checking the recipient's email address for typos or\nunnecessary spaces."))
write(B, "yahoo-tss04", reply(421, "4.7.0",
      "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user "
      "complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"))
write(B, "spamhaus", reply(554, "5.7.1",
      "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"))
write(B, "no-enhanced", reply(550, "", "Requested action not taken: mailbox unavailable"))
write(B, "synthetic", reply(0, "", "connect to 192.0.2.1:25: Connection refused"))
write(B, "spate-4.4.1", reply(451, "4.4.1", "connect to 192.0.2.1:25: Connection timed out"))
write(B, "long", reply(550, "5.7.1", "x" * 1200 + " user unknown"))

# --- record_json: [code: 2 octets] reply text NUL enhanced NUL recipient NUL sender NUL campaign
# NUL peer NUL message --------------------------------------------------------------------------
J = "record_json"


def record(code, *fields):
    return bytes([code >> 8, code & 0xff]) + b"\0".join(
        f if isinstance(f, bytes) else f.encode("latin-1") for f in fields)


write(J, "bounce", record(550, "<bob@example.com>: Recipient address rejected: User unknown",
                          "5.1.1", "bob@example.com", "news@shop.example", "spring-sale",
                          "mx1.example.com", "Subject: hi\r\nX-Campaign: spring-sale\r\n\r\nbody\r\n"))
write(J, "hostile", record(554, b"say \"hi\" \\ \r\n\t\x01 caf\xc3\xa9 \xff\xfe \xed\xa0\x80 end", "",
                           b"a\"b@x", b"", b"", b"", b"X-Campaign:\r\n folded\r\n\tmore \r\n\r\n"))
write(J, "null-sender", record(250, "ok", "2.0.0", "a@x", "", "", "", "no header at all"))

