// tests/fuzz/server_session_fuzz.cc
//
// Fuzzes smtp::ServerSession (core/smtp/server_session.h) as the reactor glue drives it: the
// client's bytes fed in chunks, every accepted message committed (success and failure in
// turn), every AUTH credential answered (accepted and refused in turn), STARTTLS honoured with
// OnTlsStarted({}), the output taken after every step.
//
// Input: [flags] [flags2] [3 chunk sizes] client bytes (chunk sizes: see fuzz_util.h).
//   flags:  0x01 starttls  0x02 auth  0x04 auth_plaintext  0x08 implicit_tls (OnTlsStarted()
//           before Start())  0x10 client_may_relay
//           0x20 tighter limits, to reach them with small inputs: max_message_size 2048,
//                max_text_line 200, max_errors 5
//           0x40 OnTimeout() once the input is used up
//           0x80 lazy spool: a message is committed only after the next chunk was fed (a
//                timeout may come first), as when the glue still reads while the spool works
//   flags2: 0x01 pregreet: the first chunk is fed before Start()
//           0x02 bare_lf = kNormalise  0x04 add no headers
//           0x08 lazy AUTH check: answered only after the next chunk was fed
//           0x10 nul = kStrip
// Limits are small (64 KiB messages, 5 recipients) so the limit paths are reachable;
// local_domains is {"example.com"}.
//
// Invariants (a violation traps):
//  - every output line is a reply line: 3 digits (first 2..5), then SP, "-" or nothing, no CR
//    or LF inside, at most 512 octets with CRLF (RFC 5321 §4.5.3.1.5), ended by CRLF; a
//    multi-line reply keeps its code (§4.2.1) and is taken whole;
//  - the first output is a 220 greeting (554 and closed, for a client that spoke first);
//  - once closed(), it stays closed and there is no further output, whatever comes in;
//  - a message is handed out only with the session paused (awaiting_commit()), and only once;
//    nothing is answered while it is paused for the spool or for an AUTH check; OnCommitted()
//    is answered first by 250 (success) or 451, OnAuthResult() by 235 or 535;
//  - an AuthRequest is PLAIN or LOGIN and is yielded once;
//  - when tls_requested(), the last output line is the 220 to STARTTLS (what the client
//    pipelined behind it was discarded: CVE-2011-0411);
//  - a message's MT-PRIORITY is -9..9 and comes only from a client in the relay networks or
//    authenticated (RFC 6710);
//  - a message has 1..max_recipients recipients, addresses of at most 256 octets without
//    control octets (and ASCII without SMTPUTF8), a body with no bare CR or LF (refused, or
//    normalised: Options::bare_lf) and no NUL (refused or stripped: Options::nul), within the size
//    limit (plus room for the headers the session adds), with no line over 1000 octets (RFC 5322
//    §2.1.1) and no line after the header section over max_text_line (a BDAT message may end
//    without CRLF: not checked);
//  - no open relay: without client_may_relay and without an authenticated user, every
//    recipient is in local_domains (or is the bare postmaster), with no '%', '!' or '@' in its
//    local part.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "core/result.h"
#include "core/smtp/server_session.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

constexpr size_t kHeader = 5;
constexpr size_t kMaxMessage = 64 << 10;
constexpr size_t kMaxRecipients = 5;
constexpr std::string_view kLocalDomain = "example.com";
// Room for what the session adds to a body (Received:, Date:, Message-ID:).
constexpr size_t kAddedHeadersRoom = 8 << 10;

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

char Lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// The first line of `out` (without CRLF), or "".
std::string_view FirstLine(std::string_view out) {
  return out.substr(0, out.find("\r\n"));
}

// The last line of `out` (without CRLF); `out` ends in CRLF.
std::string_view LastLine(std::string_view out) {
  out.remove_suffix(2);
  const size_t nl = out.rfind("\r\n");
  return nl == std::string_view::npos ? out : out.substr(nl + 2);
}

bool IsAddressOk(std::string_view address, bool utf8) {
  if (address.size() > 256) {
    return false;
  }
  for (char c : address) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 32 || u == 127 || (u >= 0x80 && !utf8)) {
      return false;
    }
  }
  return true;
}

// A recipient anyone may send to: a local domain, or the bare postmaster (RFC 5321 §4.1.1.3).
bool IsLocalRecipient(std::string_view rcpt) {
  const size_t at = rcpt.rfind('@');
  if (at == std::string_view::npos) {
    return true;  // only "<postmaster>" parses without a domain
  }
  std::string domain;
  for (char c : rcpt.substr(at + 1)) {
    domain += Lower(c);
  }
  const std::string_view local = rcpt.substr(0, at);
  return domain == kLocalDomain && local.find_first_of("%!@") == std::string_view::npos;
}

class Driver {
 public:
  struct Mode {
    bool client_may_relay = false;
    bool lazy_commit = false;
    bool lazy_auth = false;
  };

  Driver(smtp::ServerSession::Options options, Mode mode)
      : max_message_size_(options.max_message_size),
        max_text_line_(options.max_text_line),
        mode_(mode),
        session_(std::move(options)) {
    session_.SetNow(std::chrono::system_clock::time_point(std::chrono::seconds(1700000000)));
  }

  smtp::ServerSession& session() { return session_; }

  // `early`: bytes the client sent before the greeting (or empty).
  void Start(std::string_view early) {
    if (!early.empty()) {
      session_.Feed(early);
      FUZZ_CHECK(session_.TakeOutput().empty());  // nothing is said before the greeting
    }
    session_.Start();
    const std::string out = session_.TakeOutput();
    CheckReplies(out);
    if (early.empty()) {
      FUZZ_CHECK(out.starts_with("220"));
    } else {
      FUZZ_CHECK(out.starts_with("554"));  // RFC 5321 §3.1
      FUZZ_CHECK(session_.closed());
    }
    closed_ = session_.closed();
    Settle(false);
  }

  void Feed(std::string_view chunk) {
    const bool paused = session_.awaiting_commit() || session_.awaiting_auth();
    session_.Feed(chunk);
    if (paused) {
      // Paused for the spool or the credential check: input is only buffered.
      FUZZ_CHECK(session_.awaiting_commit() || session_.awaiting_auth());
      FUZZ_CHECK(session_.TakeOutput().empty());
    }
    Settle(!paused);
  }

  // The input is used up: what is outstanding gets its answer.
  void Finish() { Settle(false); }

  void Timeout() {
    const bool was_closed = session_.closed();
    session_.OnTimeout();
    const std::string out = session_.TakeOutput();
    if (!was_closed) {
      FUZZ_CHECK(FirstLine(out).starts_with("421"));
    }
    CheckReplies(out);
    FUZZ_CHECK(session_.closed());
    closed_ = true;
    Settle(false);
  }

  // Once closed, nothing the client sends gets an answer.
  void CheckSilentWhenClosed() {
    if (!closed_) {
      return;
    }
    session_.Feed("NOOP\r\nQUIT\r\n");
    session_.OnTimeout();
    FUZZ_CHECK(session_.TakeOutput().empty());
    FUZZ_CHECK(session_.closed());
  }

 private:
  // Answers what the session waits for until it waits for nothing but input, checking the
  // output of every step. `may_defer`: a lazy spool or AUTH check may leave its answer for the
  // next call.
  void Settle(bool may_defer) {
    std::string_view expect_first;  // the reply the last action must be answered with first
    for (;;) {
      const std::string out = session_.TakeOutput();
      CheckReplies(out);
      if (!expect_first.empty()) {
        FUZZ_CHECK(FirstLine(out).starts_with(expect_first));
        expect_first = {};
      }
      if (closed_) {
        FUZZ_CHECK(session_.closed());
      }
      closed_ = session_.closed();

      if (std::optional<smtp::ReceivedMessage> message = session_.TakeMessage()) {
        FUZZ_CHECK(session_.awaiting_commit());
        FUZZ_CHECK(!message_outstanding_);
        message_outstanding_ = true;
        CheckMessage(*message);
        FUZZ_CHECK(!session_.TakeMessage());  // handed out once
      }
      if (session_.awaiting_commit() && !(may_defer && mode_.lazy_commit)) {
        FUZZ_CHECK(message_outstanding_);
        message_outstanding_ = false;
        const bool ok = commits_++ % 2 == 0;
        if (ok) {
          session_.OnCommitted(std::string("Q") + std::to_string(commits_));
        } else {
          session_.OnCommitted(Unexpected{std::make_error_code(std::errc::io_error)});
        }
        if (!closed_) {
          expect_first = ok ? "250 " : "451 ";
        }
        continue;
      }
      if (std::optional<smtp::AuthRequest> auth = session_.TakeAuthRequest()) {
        FUZZ_CHECK(auth->mechanism == "PLAIN" || auth->mechanism == "LOGIN");
        FUZZ_CHECK(!session_.TakeAuthRequest());  // yielded once
        FUZZ_CHECK(!auth_outstanding_);
        auth_outstanding_ = std::move(auth);
      }
      if (auth_outstanding_) {
        FUZZ_CHECK(session_.awaiting_auth());
      }
      if (auth_outstanding_ && !(may_defer && mode_.lazy_auth)) {
        const bool ok = auths_++ % 2 == 0;
        if (ok) {
          authenticated_.insert(auth_outstanding_->user);  // may appear as auth_user
        }
        auth_outstanding_.reset();
        session_.OnAuthResult(ok);
        if (!closed_) {
          expect_first = ok ? "235 " : "535 ";
        }
        continue;
      }
      if (session_.tls_requested()) {
        // RFC 3207 §4.2 / CVE-2011-0411: the 220 is the last thing said in the clear.
        FUZZ_CHECK(!out.empty() && LastLine(out).starts_with("220 "));
        FUZZ_CHECK(!closed_);
        session_.OnTlsStarted({});
        FUZZ_CHECK(!session_.tls_requested());
        continue;
      }
      return;
    }
  }

  void CheckReplies(std::string_view out) {
    if (closed_) {
      FUZZ_CHECK(out.empty());
    }
    FUZZ_CHECK(out.empty() || out.ends_with("\r\n"));
    std::string_view open_code;  // the code of a multi-line reply still open
    while (!out.empty()) {
      const size_t end = out.find("\r\n");
      FUZZ_CHECK(end != std::string_view::npos);
      const std::string_view line = out.substr(0, end);
      out.remove_prefix(end + 2);
      FUZZ_CHECK(line.size() >= 3);
      FUZZ_CHECK(line[0] >= '2' && line[0] <= '5' && IsDigit(line[1]) && IsDigit(line[2]));
      FUZZ_CHECK(line.size() == 3 || line[3] == ' ' || line[3] == '-');
      FUZZ_CHECK(line.find('\r') == std::string_view::npos);
      FUZZ_CHECK(line.find('\n') == std::string_view::npos);
      FUZZ_CHECK(line.size() + 2 <= 512);
      if (!open_code.empty()) {
        FUZZ_CHECK(line.substr(0, 3) == open_code);
      }
      open_code = line.size() > 3 && line[3] == '-' ? line.substr(0, 3) : std::string_view();
    }
    FUZZ_CHECK(open_code.empty());  // a multi-line reply is queued whole
  }

  void CheckMessage(const smtp::ReceivedMessage& m) {
    FUZZ_CHECK(!m.rcpt_to.empty() && m.rcpt_to.size() <= kMaxRecipients);
    FUZZ_CHECK(m.dsn.empty() || m.dsn.size() == m.rcpt_to.size());
    FUZZ_CHECK(!m.helo.empty());
    FUZZ_CHECK(IsAddressOk(m.mail_from, m.smtputf8));
    for (const std::string& rcpt : m.rcpt_to) {
      FUZZ_CHECK(!rcpt.empty());
      FUZZ_CHECK(IsAddressOk(rcpt, m.smtputf8));
    }
    FUZZ_CHECK(m.auth_user.empty() || authenticated_.count(m.auth_user) != 0);
    // RFC 6710: -9 to 9, and only from a client trusted with it (relay networks or AUTH).
    FUZZ_CHECK(!m.priority || (*m.priority >= -9 && *m.priority <= 9));
    FUZZ_CHECK(!m.priority || mode_.client_may_relay || !m.auth_user.empty());
    if (!mode_.client_may_relay && m.auth_user.empty()) {
      for (const std::string& rcpt : m.rcpt_to) {
        FUZZ_CHECK(IsLocalRecipient(rcpt));  // no open relay
      }
    }
    // A bare CR or LF is refused or stored as CRLF (whatever the session adds included).
    for (size_t i = 0; i < m.body.size(); ++i) {
      if (m.body[i] == '\r') {
        FUZZ_CHECK(i + 1 < m.body.size() && m.body[i + 1] == '\n');
      } else if (m.body[i] == '\n') {
        FUZZ_CHECK(i > 0 && m.body[i - 1] == '\r');
      }
    }
    FUZZ_CHECK(m.body.find('\0') == std::string::npos);  // refused or stripped (smuggling)
    FUZZ_CHECK(m.body.size() <= max_message_size_ + kAddedHeadersRoom);
    std::string_view body = m.body;
    bool in_header = true;
    while (!body.empty()) {
      // Counted with the line end; a bare LF ends a line too.
      const size_t lf = body.find('\n');
      const size_t len = lf == std::string_view::npos ? body.size() : lf + 1;
      const std::string_view line = body.substr(0, len);
      FUZZ_CHECK(len <= 1000);                         // RFC 5322 §2.1.1
      FUZZ_CHECK(in_header || len <= max_text_line_);  // RFC 5321 §4.5.3.1.6
      if (line == "\r\n" || line == "\n") {
        in_header = false;  // the blank line after the header section
      }
      body.remove_prefix(len);
    }
  }

  const size_t max_message_size_;
  const size_t max_text_line_;
  const Mode mode_;
  smtp::ServerSession session_;
  bool closed_ = false;
  bool message_outstanding_ = false;
  std::optional<smtp::AuthRequest> auth_outstanding_;
  size_t commits_ = 0;
  size_t auths_ = 0;
  std::set<std::string> authenticated_;
};

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using spate::fuzz::Chunker;
  if (size < spate::fuzz::kHeader) {
    return 0;
  }
  const uint8_t flags = data[0];
  const uint8_t flags2 = data[1];
  spate::smtp::ServerSession::Options options;
  options.hostname = "mx.example.net";
  options.max_message_size = spate::fuzz::kMaxMessage;
  options.max_recipients = spate::fuzz::kMaxRecipients;
  options.starttls = (flags & 0x01) != 0;
  options.auth = (flags & 0x02) != 0;
  options.auth_plaintext = (flags & 0x04) != 0;
  options.implicit_tls = (flags & 0x08) != 0;
  options.client_may_relay = (flags & 0x10) != 0;
  if ((flags & 0x20) != 0) {
    options.max_message_size = 2048;
    options.max_text_line = 200;
    options.max_errors = 5;
  }
  options.local_domains = {std::string(spate::fuzz::kLocalDomain)};
  options.client_address = "192.0.2.1";
  options.bare_lf = (flags2 & 0x02) != 0 ? spate::smtp::BareLfPolicy::kNormalise
                                         : spate::smtp::BareLfPolicy::kReject;
  options.nul =
      (flags2 & 0x10) != 0 ? spate::smtp::NulPolicy::kStrip : spate::smtp::NulPolicy::kReject;
  options.add_received = (flags2 & 0x04) == 0;
  options.add_missing_headers = (flags2 & 0x04) == 0;
  options.id_nonce = "fuzz";

  spate::fuzz::Driver::Mode mode;
  mode.client_may_relay = options.client_may_relay;
  mode.lazy_commit = (flags & 0x80) != 0;
  mode.lazy_auth = (flags2 & 0x08) != 0;
  spate::fuzz::Driver driver(std::move(options), mode);
  if ((flags & 0x08) != 0) {
    driver.session().OnTlsStarted({"TLSv1.3", "TLS_AES_128_GCM_SHA256"});
  }
  Chunker chunks(spate::fuzz::AsView(data + spate::fuzz::kHeader, size - spate::fuzz::kHeader),
                 data + 2);
  std::string_view chunk;
  const bool pregreet = (flags2 & 0x01) != 0 && chunks.Next(&chunk);
  driver.Start(pregreet ? chunk : std::string_view());
  while (chunks.Next(&chunk)) {
    driver.Feed(chunk);
  }
  if ((flags & 0x40) != 0) {
    driver.Timeout();
  } else {
    driver.Finish();
  }
  driver.CheckSilentWhenClosed();
  return 0;
}
