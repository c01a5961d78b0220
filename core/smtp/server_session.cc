// core/smtp/server_session.cc
//
// The state machine:
//
//   kStart --EHLO/HELO--> kGreeted --MAIL--> kMail --RCPT--> kRcpt --DATA/354--> kData
//      ^                  ^ ^  |  ^                            |                   |
//      |                  | |  |  |                            +--BDAT--> kChunking |
//      |                  | |  |  +-- 552/554/550 after "." or BDAT LAST ----------+ "." / LAST
//      |                  | |  |                                                   |
//      |                  | |  +--AUTH--> kAuth --credentials--> kAuthCheck        |
//      |                  | +------- OnAuthResult(): 235 / 535 ------+             |
//      |                  +----- OnCommitted(): 250 queued as <id> / 451 ----- kCommit
//      +--- OnTlsStarted() (after the 220 to STARTTLS: input dropped until then)
//   RSET and EHLO/HELO reset the transaction from any command state. A refused DATA or BDAT
//   leads to kBroken, which only RSET or EHLO/HELO leave (RFC 3030 §2: "a RSET command MUST be
//   sent"; RFC 2920 §3.1: nothing may be pipelined behind DATA, so whatever was is not trusted to
//   start a transaction).
//
// Input handling. Feed() works on the caller's view: command lines, message text and BDAT chunks
// are consumed straight from it, and only an unfinished command line (shorter than its limit) is
// copied into in_. While the session is paused (kCommit, kAuthCheck) the input is appended to in_
// and consumed from there afterwards, moving an offset instead of erasing.
//
// Elsewhere: the data phase (message text, the verdict after it) in server_session_data.cc; MAIL
// and RCPT parameters in internal/esmtp_params, AUTH exchanges in internal/sasl, the fields added
// to a message in internal/trace_headers.
#include "core/smtp/server_session.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/smtp/address.h"
#include "core/smtp/ascii.h"
#include "core/smtp/errc.h"
#include "core/smtp/internal/esmtp_params.h"
#include "core/smtp/internal/sasl.h"
#include "core/wipe.h"

namespace spate::smtp {
namespace {

constexpr std::string_view kDsnNotOffered = "555 5.5.4 DSN parameters are not supported here";

// RFC 4954 §4: a SASL response line may be up to 12288 octets.
constexpr size_t kMaxAuthLine = 12288;
// RFC 5321 §4.5.3.1.4 lets extensions lengthen command lines. MAIL: SIZE 26 (RFC 1870 §4),
// BODY=8BITMIME 15 (RFC 6152 §2), SMTPUTF8 10 (RFC 6531 §3.1), RET and ENVID 100 + 8 and their
// keywords (RFC 3461 §5.4), AUTH 500 (RFC 4954 §5), MT-PRIORITY 15 (RFC 6710 §3).
constexpr size_t kMailLineExtra = 26 + 15 + 10 + 130 + 500 + 15;
// RCPT: NOTIFY and ORCPT, 530 (RFC 3461 §5.4).
constexpr size_t kRcptLineExtra = 530;

constexpr std::string_view kSendRset = "503 5.5.1 Error: transaction failed, send RSET first";
constexpr std::string_view kNeedMail = "503 5.5.1 Error: need MAIL command";

bool ConsumePrefixNoCase(std::string_view* s, std::string_view prefix) {
  if (!StartsWithNoCase(*s, prefix)) {
    return false;
  }
  s->remove_prefix(prefix.size());
  return true;
}

// Drops the SP that RFC 5321 §4.1.1.2/§4.1.1.3 does not allow between "FROM:"/"TO:" and the path,
// but that common clients send ("MAIL FROM: <a@example.com>"); Postfix and Exim accept it too.
std::string_view SkipSpaces(std::string_view s) {
  while (!s.empty() && s[0] == ' ') {
    s.remove_prefix(1);
  }
  return s;
}

}  // namespace

ServerSession::ServerSession(Options options) : options_(std::move(options)) {
  for (std::string& domain : options_.local_domains) {
    for (char& c : domain) {
      c = AsciiLower(c);
    }
  }
}

void ServerSession::Start() {
  if (started_) {
    return;
  }
  started_ = true;
  if (early_input_) {
    // The client talked before the greeting: no SMTP client does (RFC 5321 §3.1, §4.3.1), a
    // spam engine that does not wait does (Postfix postscreen's pregreet test). RFC 5321 §3.1
    // allows a 554 in place of the 220.
    Say("554 5.5.0 SMTP protocol violation: input before greeting");
    closed_ = true;
    return;
  }
  Say("220 " + options_.hostname + " ESMTP spate");
}

void ServerSession::Feed(std::string_view in) {
  if (closed_ || in.empty()) {
    return;
  }
  if (!started_) {
    early_input_ = true;
    return;
  }
  if (tls_requested_) {
    return;  // RFC 3207 §4.2, CVE-2011-0411: nothing sent in the clear survives STARTTLS
  }
  if (Paused()) {
    in_.append(in);
    return;
  }
  if (!in_.empty()) {
    // in_ holds the start of a command line: complete it from `in` first.
    SPATE_CHECK(in_off_ == 0 && !discarding_ && state_ != State::kData && chunk_left_ == 0);
    // The limit depends on the verb, which may be split between in_ and `in`.
    std::string head = in_.substr(0, 5);
    head.append(in.substr(0, 5 - head.size()));
    const size_t limit = LineLimit(head);
    const char* lf = static_cast<const char*>(std::memchr(in.data(), '\n', in.size()));
    if (lf == nullptr) {
      if (in_.size() + in.size() + 1 > limit) {
        in_.clear();
        discarding_ = true;
        LineTooLong();
      } else {
        in_.append(in);
      }
      return;
    }
    const size_t len = static_cast<size_t>(lf - in.data()) + 1;
    if (in_.size() + len > limit) {
      in_.clear();
      LineTooLong();
    } else {
      in_.append(in.data(), len);
      std::string line = std::exchange(in_, std::string());
      HandleCommandLine(line);
      if (secret_seen_)
        Wipe(line);
    }
    in.remove_prefix(len);
    if (closed_ || tls_requested_) {
      return;
    }
    if (Paused()) {
      in_.assign(in);
      return;
    }
  }
  const size_t used = Consume(in);
  if (!closed_ && !tls_requested_ && used < in.size()) {
    in_.append(in.substr(used));
  }
  ScrubInput();
}

std::optional<ReceivedMessage> ServerSession::TakeMessage() {
  std::optional<ReceivedMessage> message = std::move(ready_);
  ready_.reset();
  return message;
}

bool ServerSession::awaiting_commit() const {
  return state_ == State::kCommit;
}

bool ServerSession::in_data() const {
  return state_ == State::kData || state_ == State::kChunking || chunk_left_ > 0;
}

void ServerSession::OnCommitted(Result<std::string> queue_id) {
  SPATE_CHECK(state_ == State::kCommit);
  ready_.reset();
  ResetTransaction();
  if (closed_) {
    return;  // timed out meanwhile; nobody is listening
  }
  if (queue_id) {
    Say("250 2.0.0 Ok: queued as " + *queue_id);
    errors_ = 0;
  } else if (queue_id.error() == std::errc::no_space_on_device) {
    // The spool refused it to keep its free-space watermark: RFC 5321 §4.2.3 452, RFC 3463
    // X.3.1 "mail system full".
    Say("452 4.3.1 Error: insufficient system storage, try again later");
  } else {
    // RFC 5321 §4.2.3 451 "local error in processing"; RFC 3463 X.3.0 "other mail system status".
    Say("451 4.3.0 Error: queue file write error");
  }
  ResumeBuffered();
}

void ServerSession::OnTimeout() {
  if (closed_) {
    return;
  }
  // RFC 5321 §4.5.3.2: a server that times out should send 421 and close.
  Say("421 4.4.2 " + options_.hostname + " Error: timeout exceeded");
  closed_ = true;
  in_.clear();
  in_off_ = 0;
}

void ServerSession::SetNow(std::chrono::system_clock::time_point now) {
  now_ = now;
}

bool ServerSession::tls_requested() const {
  return tls_requested_;
}

void ServerSession::OnTlsStarted(TlsInfo info) {
  tls_info_ = std::move(info);
  tls_active_ = true;
  if (!tls_requested_) {
    return;  // implicit TLS: the handshake came before the greeting
  }
  tls_requested_ = false;
  // RFC 3207 §4.2: back to the state after the 220 greeting; whatever the client said in the
  // clear (its EHLO, its identity) is forgotten.
  helo_.clear();
  ehlo_ = false;
  authenticated_ = false;
  auth_user_.clear();
  ResetTransaction();
  in_.clear();
  in_off_ = 0;
  discarding_ = false;
}

std::optional<AuthRequest> ServerSession::TakeAuthRequest() {
  // Copied, then wiped: a short password moved from would leave its bytes in auth_request_.
  std::optional<AuthRequest> out = auth_request_;
  DropAuthRequest();
  return out;
}

void ServerSession::DropAuthRequest() {
  if (auth_request_)
    Wipe(auth_request_->password);
  auth_request_.reset();
}

// After a SASL response was read: no copy of it stays in the input buffer, neither in its
// consumed part nor in the spare capacity an erase left behind.
void ServerSession::ScrubInput() {
  if (!secret_seen_)
    return;
  WipePrefix(in_, in_off_);
  WipeSpare(in_);
}

void ServerSession::OnAuthResult(bool ok) {
  if (state_ != State::kAuthCheck) {
    return;  // nothing asked (or the session closed meanwhile)
  }
  DropAuthRequest();
  state_ = State::kGreeted;
  const std::string user = std::exchange(auth_candidate_, std::string());
  if (closed_) {
    return;
  }
  if (ok) {
    authenticated_ = true;
    auth_user_ = user;
    Say("235 2.7.0 Authentication successful");  // RFC 4954 §6
  } else {
    Refuse("535 5.7.8 Authentication credentials invalid");  // RFC 4954 §6
  }
  ResumeBuffered();
}

bool ServerSession::awaiting_auth() const {
  return state_ == State::kAuthCheck;
}

std::string ServerSession::TakeOutput() {
  return std::exchange(out_, std::string());
}

bool ServerSession::closed() const {
  return closed_;
}

bool ServerSession::Paused() const {
  return state_ == State::kCommit || state_ == State::kAuthCheck;
}

bool ServerSession::InTls() const {
  return options_.implicit_tls || tls_active_;
}

// RFC 4954 §4 and Options::auth_plaintext: no password crosses the network in the clear.
bool ServerSession::AuthOffered() const {
  return options_.auth && (InTls() || options_.auth_plaintext);
}

// The longest line allowed (with its LF), judged from the line's first octets.
size_t ServerSession::LineLimit(std::string_view line_start) const {
  if (state_ == State::kAuth) {
    return std::max(kMaxAuthLine, options_.max_command_line);
  }
  if (StartsWithNoCase(line_start, "MAIL ")) {
    return options_.max_command_line + kMailLineExtra;
  }
  if (StartsWithNoCase(line_start, "RCPT ")) {
    return options_.max_command_line + kRcptLineExtra;
  }
  return options_.max_command_line;
}

void ServerSession::LineTooLong() {
  if (state_ == State::kAuth) {
    AuthFail("500 5.5.6 Authentication Exchange line is too long");  // RFC 4954 §4
    return;
  }
  Refuse("500 5.5.2 Error: line too long");  // RFC 5321 §4.5.3.1.4, §4.5.3.1.9
}

// Consumes a prefix of `in`: stops when the session pauses (kCommit, kAuthCheck), closes or
// awaits TLS, or before an unfinished command line, which the caller must keep.
size_t ServerSession::Consume(std::string_view in) {
  size_t pos = 0;
  while (pos < in.size() && !closed_ && !tls_requested_ && !Paused()) {
    const std::string_view rest = in.substr(pos);
    if (chunk_left_ > 0) {
      pos += ConsumeChunk(rest);
      continue;
    }
    if (state_ == State::kData) {
      pos += ScanText(rest, true);
      continue;
    }
    const char* lf = static_cast<const char*>(std::memchr(rest.data(), '\n', rest.size()));
    if (discarding_) {
      if (lf == nullptr) {
        return in.size();
      }
      discarding_ = false;
      pos += static_cast<size_t>(lf - rest.data()) + 1;
      continue;
    }
    if (lf == nullptr) {
      // Not even its LF would fit: refuse now and skip the line without buffering it.
      if (rest.size() + 1 > LineLimit(rest)) {
        discarding_ = true;
        LineTooLong();
        return in.size();
      }
      return pos;
    }
    const size_t len = static_cast<size_t>(lf - rest.data()) + 1;
    HandleCommandLine(rest.substr(0, len));
    pos += len;
  }
  return pos;
}

// `line` ends in LF and may be an overlong line completed in one piece.
void ServerSession::HandleCommandLine(std::string_view line) {
  if (line.size() > LineLimit(line)) {
    LineTooLong();
    return;
  }
  line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) {
    line.remove_suffix(1);
  }
  if (state_ == State::kAuth) {
    AuthResponse(line);
    return;
  }
  const size_t sp = line.find(' ');
  const std::string_view verb = line.substr(0, sp);
  const std::string_view arg = sp == std::string_view::npos ? "" : line.substr(sp + 1);

  if (EqualsNoCase(verb, "EHLO")) {
    Hello(arg, true);
  } else if (EqualsNoCase(verb, "HELO")) {
    Hello(arg, false);
  } else if (EqualsNoCase(verb, "MAIL")) {
    Mail(arg);
  } else if (EqualsNoCase(verb, "RCPT")) {
    Rcpt(arg);
  } else if (EqualsNoCase(verb, "DATA")) {
    Data(arg);
  } else if (EqualsNoCase(verb, "BDAT")) {
    Bdat(arg);
  } else if (EqualsNoCase(verb, "RSET")) {
    if (!arg.empty()) {
      Refuse("501 5.5.4 Syntax: RSET");
      return;
    }
    ResetTransaction();  // §4.1.1.5
    Say("250 2.0.0 Ok");
  } else if (EqualsNoCase(verb, "NOOP")) {
    Say("250 2.0.0 Ok");  // §4.1.1.9: an argument is allowed and ignored
  } else if (EqualsNoCase(verb, "QUIT")) {
    // §4.1.1.10. An argument is not refused: the client wants to leave either way.
    Say("221 2.0.0 Bye");
    closed_ = true;
  } else if (EqualsNoCase(verb, "VRFY")) {
    if (arg.empty()) {
      Refuse("501 5.5.4 Syntax: VRFY address");
      return;
    }
    Say("252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");  // §3.5.3
  } else if (EqualsNoCase(verb, "HELP")) {
    std::string help = "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP";
    if (options_.starttls) {
      help += " STARTTLS";
    }
    if (options_.auth) {
      help += " AUTH";
    }
    Say(help);
  } else if (EqualsNoCase(verb, "STARTTLS")) {
    StartTls(arg);
  } else if (EqualsNoCase(verb, "AUTH")) {
    Auth(arg);
  } else {
    // §4.2.4 500 "syntax error, command unrecognized"; RFC 3463 X.5.1 "invalid command".
    Refuse("500 5.5.1 Error: command not recognized");
  }
}

void ServerSession::Hello(std::string_view arg, bool extended) {
  // §4.1.1.1: the argument is a domain or an address literal. Its form is not checked
  // against the client (policy, not syntax), but control octets (CR, NUL, TAB...) have no place
  // in either, and the argument ends up in the Received: header: refused.
  const bool has_control = std::any_of(arg.begin(), arg.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
  if (arg.empty() || has_control) {
    Refuse(extended ? "501 5.5.4 Syntax: EHLO hostname" : "501 5.5.4 Syntax: HELO hostname");
    return;
  }
  // §4.1.4: EHLO/HELO resets the state as RSET does.
  helo_ = std::string(arg);
  ehlo_ = extended;
  ResetTransaction();
  if (!extended) {
    Say("250 " + options_.hostname);
    return;
  }
  out_ += "250-" + options_.hostname + "\r\n";
  out_ += "250-PIPELINING\r\n";
  out_ += "250-SIZE " + std::to_string(options_.max_message_size) + "\r\n";
  out_ += "250-8BITMIME\r\n";
  if (options_.starttls && !InTls()) {
    out_ += "250-STARTTLS\r\n";  // RFC 3207 §4.2: never once TLS is on
  }
  if (AuthOffered()) {
    out_ += "250-AUTH PLAIN LOGIN\r\n";
  }
  out_ += "250-ENHANCEDSTATUSCODES\r\n";
  if (options_.dsn)
    out_ += "250-DSN\r\n";  // RFC 3461: only when the notices it promises are sent
  // RFC 6710 §3: the keyword names the priority assignment policy, which says what the values
  // mean for handling; MIXER is the plainest (RFC 2156's urgent, normal and non-urgent).
  out_ += "250-MT-PRIORITY MIXER\r\n";
  out_ += "250-SMTPUTF8\r\n";
  out_ += "250 CHUNKING\r\n";
}

void ServerSession::Mail(std::string_view arg) {
  if (state_ == State::kStart) {
    Refuse("503 5.5.1 Error: send HELO/EHLO first");
    return;
  }
  if (state_ == State::kBroken) {
    Refuse(kSendRset);
    return;
  }
  if (state_ != State::kGreeted) {
    Refuse("503 5.5.1 Error: nested MAIL command");  // §4.1.4
    return;
  }
  if (!ConsumePrefixNoCase(&arg, "FROM:")) {
    Refuse("501 5.5.4 Syntax: MAIL FROM:<address>");
    return;
  }
  arg = SkipSpaces(arg);
  size_t used = 0;
  // UTF-8 is parsed here and refused below unless SMTPUTF8 comes with it: the parameters follow
  // the path, and only a parsed path says where they start.
  Result<Path> path = ParsePathPrefix(arg, PathKind::kReverse, &used, /*smtputf8=*/true);
  if (!path) {
    Refuse("501 5.1.7 Bad sender address syntax");
    return;
  }
  internal::MailParams params;
  if (const std::string_view refusal =
          internal::ParseMailParams(arg.substr(used), options_.auth, &params);
      !refusal.empty()) {
    Refuse(refusal);
    return;
  }
  if (!options_.dsn && (params.ret != ReceivedMessage::Ret::kUnset || !params.envid.empty())) {
    Refuse(kDsnNotOffered);  // RFC 5321 §4.1.1.11: a parameter of an extension not offered
    return;
  }
  if (params.has_size && options_.max_message_size != 0 &&
      params.size > options_.max_message_size) {
    // RFC 1870 §6.1; a policy outcome, not a client error.
    Say("552 5.3.4 Message size exceeds fixed maximum message size");
    return;
  }
  if (!params.smtputf8 && HasNonAscii(path->mailbox)) {
    Say("550 5.6.7 Non-ASCII addresses not permitted for that sender");  // RFC 6531 §3.5
    return;
  }
  // The store cannot take a message now: said at MAIL, before any data is sent for nothing.
  // Not the client's error (Say, not Refuse): it should try again later.
  if (intake_ == Intake::kFull) {
    // RFC 5321 §4.2.3 452 "insufficient system storage"; RFC 3463 X.3.1 "mail system full".
    Say("452 4.3.1 Error: insufficient system storage, try again later");
    return;
  }
  if (intake_ == Intake::kUnavailable) {
    Say("451 4.3.0 Error: queue unavailable, try again later");  // RFC 3463 X.3.0
    return;
  }
  txn_.mail_from = std::move(path->mailbox);
  txn_.body_8bit = params.body_8bit;
  txn_.smtputf8 = params.smtputf8;
  txn_.ret = params.ret;
  txn_.envid = std::move(params.envid);
  // RFC 6710 §4.1: a priority is only taken from a client trusted with it (AUTH is done before
  // MAIL, RFC 4954 §4); from others it was checked and is dropped, the message is as if without.
  if (params.has_priority && (authenticated_ || options_.client_may_relay))
    txn_.priority = params.priority;
  if (params.has_size) {
    ReserveBody(params.size);  // RFC 1870 §3: the client's estimate
  }
  state_ = State::kMail;
  Say("250 2.1.0 Ok");
}

void ServerSession::Rcpt(std::string_view arg) {
  if (state_ == State::kBroken) {
    Refuse(kSendRset);
    return;
  }
  if (state_ == State::kChunking) {
    Refuse("503 5.5.1 Error: RCPT after BDAT");  // RFC 3030 §2: the message is under way
    return;
  }
  if (state_ != State::kMail && state_ != State::kRcpt) {
    Refuse(kNeedMail);
    return;
  }
  if (!ConsumePrefixNoCase(&arg, "TO:")) {
    Refuse("501 5.5.4 Syntax: RCPT TO:<address>");
    return;
  }
  arg = SkipSpaces(arg);
  size_t used = 0;
  Result<Path> path = ParsePathPrefix(arg, PathKind::kForward, &used, txn_.smtputf8);
  if (!path) {
    if (path.error() == Errc::kAddressNotAscii) {
      Say("553 5.6.7 Non-ASCII addresses not permitted for that recipient");  // RFC 6531 §3.5
    } else {
      Refuse("501 5.1.3 Bad recipient address syntax");
    }
    return;
  }
  DsnRecipient dsn;
  if (const std::string_view refusal = internal::ParseRcptParams(arg.substr(used), &dsn);
      !refusal.empty()) {
    Refuse(refusal);
    return;
  }
  if (!options_.dsn && (dsn.notify != 0 || !dsn.orcpt.empty())) {
    Refuse(kDsnNotOffered);
    return;
  }
  if (!(options_.client_may_relay || authenticated_) &&
      path->local_part.find_first_of("%!@") != std::string::npos) {
    // A %-hack, bang path or quoted "@" routes through the named domain to another one: a
    // local domain must not become a relay for a client that may not relay.
    Refuse("501 5.1.3 Bad recipient address syntax");
    return;
  }
  if (!MayRelayTo(*path)) {
    // RFC 5321 §3.6.2, RFC 3463 X.7.1 "delivery not authorized".
    Say("550 5.7.1 <" + path->mailbox + ">: Relay access denied");
    return;
  }
  if (options_.rcpt_check) {
    if (std::string refusal = options_.rcpt_check(txn_.mail_from, path->mailbox);
        !refusal.empty()) {
      Say(refusal);
      return;
    }
  }
  if (txn_.rcpt_to.size() >= options_.max_recipients) {
    // §4.5.3.1.8, §4.5.3.1.10: refuse the extra ones, keep the ones accepted.
    Say("452 4.5.3 Error: too many recipients");
    return;
  }
  txn_.rcpt_to.push_back(std::move(path->mailbox));
  txn_.dsn.push_back(std::move(dsn));
  state_ = State::kRcpt;
  Say("250 2.1.5 Ok");
}

// The relay policy. The domain is the parsed one of the final mailbox (a source route is
// dropped by the parser, RFC 5321 Appendix C), lower-cased, without a trailing dot (the parser
// refuses one).
bool ServerSession::MayRelayTo(const Path& path) const {
  if (options_.client_may_relay || authenticated_) {
    return true;
  }
  if (path.domain.empty()) {
    return true;  // "<Postmaster>" (RFC 5321 §4.1.1.3) is always local
  }
  if (path.domain[0] == '[') {
    return false;  // an address literal is never a local domain
  }
  return std::find(options_.local_domains.begin(), options_.local_domains.end(), path.domain) !=
         options_.local_domains.end();
}

// A refused DATA or BDAT: the transaction is gone, and until RSET (or EHLO/HELO) no other may
// start: the client has pipelined what follows before it saw this reply (RFC 2920 §3.1 forbids
// it after DATA), so it may be message text that merely looks like commands.
void ServerSession::RefuseData(std::string_view reply) {
  ResetTransaction();
  state_ = State::kBroken;
  Refuse(reply);
}

void ServerSession::Data(std::string_view arg) {
  if (state_ == State::kChunking) {
    RefuseData("503 5.5.1 Error: DATA after BDAT");  // RFC 3030 §2
    return;
  }
  if (state_ == State::kBroken) {
    RefuseData(kSendRset);
    return;
  }
  if (state_ != State::kMail && state_ != State::kRcpt) {
    RefuseData(kNeedMail);
    return;
  }
  if (!arg.empty()) {
    RefuseData("501 5.5.4 Syntax: DATA");
    return;
  }
  if (state_ == State::kMail) {
    // RFC 2920 §3.1 / RFC 5321 §3.3: DATA with no accepted recipient gets 554 (or 503).
    RefuseData("554 5.5.1 Error: no valid recipients");
    return;
  }
  state_ = State::kData;
  StartBody();
  Say("354 End data with <CR><LF>.<CR><LF>");
}

// RFC 3030 §2: bdat-cmd ::= "BDAT" SP chunk-size [ SP end-marker ] CR LF. The chunk follows
// the line and is read in full whatever the verdict; the reply comes after it.
void ServerSession::Bdat(std::string_view arg) {
  const size_t sp = arg.find(' ');
  const std::string_view size_text = arg.substr(0, sp);
  const std::string_view marker = sp == std::string_view::npos ? "" : arg.substr(sp + 1);
  uint64_t size = 0;
  if (!internal::ParseSize(size_text, &size) || !(marker.empty() || EqualsNoCase(marker, "LAST"))) {
    // Where the chunk ends is unknown: nothing that follows can be trusted to be a command.
    Say("501 5.5.4 Syntax: BDAT chunk-size [LAST]");
    Say("421 4.5.0 " + options_.hostname + " Error: lost the BDAT framing, closing connection");
    closed_ = true;
    return;
  }
  chunk_size_ = size;
  chunk_left_ = size;
  chunk_last_ = !marker.empty();
  chunk_refusal_.clear();
  switch (state_) {
    case State::kRcpt:
      StartBody();
      break;
    case State::kChunking:
      break;
    case State::kMail:
      chunk_refusal_ = "503 5.5.1 Error: need RCPT command";
      break;
    case State::kBroken:
      chunk_refusal_ = kSendRset;
      break;
    default:
      chunk_refusal_ = kNeedMail;
      break;
  }
  if (chunk_left_ == 0) {
    FinishChunk();
  }
}

void ServerSession::StartTls(std::string_view arg) {
  if (!options_.starttls) {
    Refuse("502 5.5.1 Error: command not implemented");
    return;
  }
  if (InTls()) {
    Refuse("503 5.5.1 Error: TLS already active");  // RFC 3207 §4.2
    return;
  }
  if (!arg.empty()) {
    Refuse("501 5.5.4 Syntax: STARTTLS");  // RFC 3207 §4
    return;
  }
  if (!ehlo_) {
    Refuse("503 5.5.1 Error: send EHLO first");  // RFC 3207 §4: an EHLO keyword
    return;
  }
  if (state_ != State::kGreeted) {
    Refuse("503 5.5.1 Error: MAIL transaction in progress");
    return;
  }
  Say("220 2.0.0 Ready to start TLS");  // RFC 3207 §4
  tls_requested_ = true;
}

// RFC 4954 §4: AUTH mechanism [initial-response]. PLAIN (RFC 4616) and LOGIN.
void ServerSession::Auth(std::string_view arg) {
  if (!options_.auth) {
    Refuse("503 5.5.1 Error: authentication not enabled");
    return;
  }
  if (!ehlo_) {
    Refuse("503 5.5.1 Error: send EHLO first");
    return;
  }
  if (!AuthOffered()) {
    Refuse("538 5.7.11 Encryption required for requested authentication mechanism");  // §6
    return;
  }
  if (authenticated_) {
    Refuse("503 5.5.1 Error: already authenticated");  // §4
    return;
  }
  if (state_ != State::kGreeted) {
    Refuse("503 5.5.1 Error: MAIL transaction in progress");  // §4
    return;
  }
  const size_t sp = arg.find(' ');
  const std::string_view mechanism = arg.substr(0, sp);
  const bool has_initial = sp != std::string_view::npos;
  const std::string_view initial = has_initial ? arg.substr(sp + 1) : "";
  if (mechanism.empty() || (has_initial && initial.empty())) {
    Refuse("501 5.5.4 Syntax: AUTH mechanism [initial-response]");
    return;
  }
  const bool plain = EqualsNoCase(mechanism, "PLAIN");
  if (!plain && !EqualsNoCase(mechanism, "LOGIN")) {
    Refuse("504 5.5.4 Unrecognized authentication type");  // §4
    return;
  }
  const std::string_view challenge = sasl_.Begin(plain);
  state_ = State::kAuth;
  if (!has_initial) {
    Say(challenge);
    return;
  }
  AuthResponse(initial == "=" ? "" : initial);  // "=" is an empty initial response (§4)
}

// A SASL response (a line after a 334, or the initial response).
void ServerSession::AuthResponse(std::string_view line) {
  secret_seen_ = true;
  AuthRequest credentials;
  const internal::SaslServer::Step step = sasl_.Respond(line, &credentials);
  switch (step.outcome) {
    case internal::SaslServer::Outcome::kChallenge:
      Say(step.reply);
      return;
    case internal::SaslServer::Outcome::kFailed:
      AuthFail(step.reply);
      return;
    case internal::SaslServer::Outcome::kComplete:
      break;
  }
  auth_candidate_ = credentials.user;
  auth_request_ = credentials;
  Wipe(credentials.password);
  state_ = State::kAuthCheck;
}

void ServerSession::AuthFail(std::string_view reply) {
  sasl_ = internal::SaslServer();
  state_ = State::kGreeted;
  Refuse(reply);
}

void ServerSession::Say(std::string_view reply) {
  out_.append(reply);
  out_ += "\r\n";
}

// A reply to a command the session could not accept for its syntax or sequence.
void ServerSession::Refuse(std::string_view reply) {
  Say(reply);
  if (++errors_ >= options_.max_errors) {
    Say("421 4.7.0 " + options_.hostname + " Error: too many errors");
    closed_ = true;
  }
}

void ServerSession::ResetTransaction() {
  txn_ = ReceivedMessage{};
  state_ = helo_.empty() ? State::kStart : State::kGreeted;
}

void ServerSession::ResumeBuffered() {
  in_off_ += Consume(std::string_view(in_).substr(in_off_));
  if (closed_ || tls_requested_) {
    in_.clear();
    in_off_ = 0;
  } else if (!Paused()) {
    in_.erase(0, in_off_);  // leaves an unfinished command line, or nothing
    in_off_ = 0;
  }
  ScrubInput();
}

}  // namespace spate::smtp
