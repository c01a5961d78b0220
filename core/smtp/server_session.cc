// core/smtp/server_session.cc
//
// The state machine:
//
//   kStart --EHLO/HELO--> kGreeted --MAIL--> kMail --RCPT--> kRcpt --DATA/354--> kData
//      ^                     ^  ^                                                  |
//      |                     |  +------ 552 / 554 after "." (transaction dropped) -+
//      |                     |                                                     | "."
//      |                     +--- OnCommitted(): 250 queued as <id> / 451 --- kCommit
//   RSET and EHLO/HELO reset the transaction from any command state.
//
// Input handling. Feed() works on the caller's view: command lines and message text are consumed
// straight from it, and only an unfinished command line (< max_command_line octets) is copied
// into in_. While a message waits for the spool (kCommit) the input is appended to in_ and
// consumed from there after OnCommitted(), moving an offset instead of erasing.
//
// The data phase is a small scanner (Scan) over five states. Message text is copied a line at a
// time (memchr for LF); only a '.' at the start of a line and the CR after it are held back, so
// that ".\r\n" can end the data (RFC 5321 §4.1.1.4) and a leading '.' can be removed (§4.5.2).
#include "core/smtp/server_session.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "core/smtp/address.h"
#include "core/smtp/errc.h"

namespace spate::smtp {
namespace {

char Lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) {
      return false;
    }
  }
  return true;
}

bool ConsumePrefixNoCase(std::string_view* s, std::string_view prefix) {
  if (s->size() < prefix.size() || !EqualsNoCase(s->substr(0, prefix.size()), prefix)) {
    return false;
  }
  s->remove_prefix(prefix.size());
  return true;
}

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

struct Param {
  std::string_view keyword;
  std::string_view value;
  bool has_value = false;
};

// Splits what follows a path: *(SP esmtp-param) with
//   esmtp-param = esmtp-keyword ["=" esmtp-value]
//   esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
//   esmtp-value = 1*(%d33-60 / %d62-126)            (RFC 5321 §4.1.2)
// Runs of SP between parameters are tolerated. Returns false on a syntax error.
bool ParseParams(std::string_view rest, std::vector<Param>* params) {
  while (!rest.empty()) {
    if (rest[0] != ' ') {
      return false;
    }
    while (!rest.empty() && rest[0] == ' ') {
      rest.remove_prefix(1);
    }
    if (rest.empty()) {
      break;
    }
    const size_t end = std::min(rest.find(' '), rest.size());
    const std::string_view item = rest.substr(0, end);
    rest.remove_prefix(end);
    Param param;
    const size_t eq = item.find('=');
    param.keyword = item.substr(0, eq);
    if (param.keyword.empty() || !IsAlnum(param.keyword[0])) {
      return false;
    }
    for (char c : param.keyword) {
      if (!IsAlnum(c) && c != '-') {
        return false;
      }
    }
    if (eq != std::string_view::npos) {
      param.has_value = true;
      param.value = item.substr(eq + 1);
      if (param.value.empty()) {
        return false;
      }
      for (char c : param.value) {
        if (c < 33 || c > 126 || c == '=') {
          return false;
        }
      }
    }
    params->push_back(param);
  }
  return true;
}

// RFC 1870 §3: size-value ::= 1*20DIGIT. Saturates instead of overflowing.
bool ParseSize(std::string_view s, size_t* size) {
  if (s.empty() || s.size() > 20) {
    return false;
  }
  size_t value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
    const size_t digit = static_cast<size_t>(c - '0');
    value = value > (SIZE_MAX - digit) / 10 ? SIZE_MAX : value * 10 + digit;
  }
  *size = value;
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

bool IsAddressNotAscii(const std::error_code& ec) {
  return ec == Errc::kAddressNotAscii;
}

}  // namespace

ServerSession::ServerSession(Options options) : options_(std::move(options)) {}

void ServerSession::Start() {
  Say("220 " + options_.hostname + " ESMTP spate");
}

void ServerSession::Feed(std::string_view in) {
  if (closed_ || in.empty()) {
    return;
  }
  if (state_ == State::kCommit) {
    in_.append(in);
    return;
  }
  if (!in_.empty()) {
    // in_ holds the start of a command line: complete it from `in` first.
    SPATE_CHECK(in_off_ == 0 && !discarding_ && state_ != State::kData);
    const char* lf = static_cast<const char*>(std::memchr(in.data(), '\n', in.size()));
    if (lf == nullptr) {
      if (in_.size() + in.size() + 1 > options_.max_command_line) {
        in_.clear();
        discarding_ = true;
        Refuse("500 5.5.2 Error: line too long");
      } else {
        in_.append(in);
      }
      return;
    }
    const size_t len = static_cast<size_t>(lf - in.data()) + 1;
    if (in_.size() + len > options_.max_command_line) {
      in_.clear();
      Refuse("500 5.5.2 Error: line too long");
    } else {
      in_.append(in.data(), len);
      HandleCommandLine(in_);
      in_.clear();
    }
    in.remove_prefix(len);
    if (closed_) {
      return;
    }
  }
  const size_t used = Consume(in);
  if (!closed_ && used < in.size()) {
    in_.append(in.substr(used));
  }
}

std::optional<ReceivedMessage> ServerSession::TakeMessage() {
  std::optional<ReceivedMessage> message = std::move(ready_);
  ready_.reset();
  return message;
}

bool ServerSession::awaiting_commit() const {
  return state_ == State::kCommit;
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

std::string ServerSession::TakeOutput() {
  return std::exchange(out_, std::string());
}

bool ServerSession::closed() const {
  return closed_;
}

// Consumes a prefix of `in`: stops at the end of a data phase (kCommit), when the session closes,
// or before an unfinished command line, which the caller must keep.
size_t ServerSession::Consume(std::string_view in) {
  size_t pos = 0;
  while (pos < in.size() && !closed_ && state_ != State::kCommit) {
    const std::string_view rest = in.substr(pos);
    if (state_ == State::kData) {
      pos += ConsumeData(rest);
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
      if (rest.size() + 1 > options_.max_command_line) {
        discarding_ = true;
        Refuse("500 5.5.2 Error: line too long");
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

// Consumes message text up to and including the final ".\r\n", or all of `in`.
size_t ServerSession::ConsumeData(std::string_view in) {
  size_t i = 0;
  while (i < in.size()) {
    const char c = in[i];
    switch (scan_) {
      case Scan::kLineStart:
        if (c == '.') {
          scan_ = Scan::kDot;
          ++i;
        } else {
          scan_ = Scan::kText;
        }
        break;
      case Scan::kDot:
        if (c == '\r') {
          scan_ = Scan::kDotCr;
          ++i;
        } else {
          scan_ = Scan::kText;  // a leading dot followed by more text is removed (§4.5.2)
        }
        break;
      case Scan::kDotCr:
        if (c == '\n') {
          EndOfData();  // <CRLF>.<CRLF> (§4.1.1.4)
          return i + 1;
        }
        AppendBody("\r", 1);  // ".\r" and more: the dot was stuffing, the CR is text
        scan_ = Scan::kCr;
        break;
      case Scan::kCr:
        if (c == '\n') {
          AppendBody("\n", 1);
          line_len_ = 0;
          scan_ = Scan::kLineStart;
          ++i;
        } else {
          scan_ = Scan::kText;
        }
        break;
      case Scan::kText: {
        // Everything up to the next LF is text. A CRLF starts a line; a bare LF does not (it
        // cannot lead to a terminator: SMTP smuggling), but it does end the line for the length
        // limit, because that is how the MTAs downstream will count it.
        const char* p = in.data() + i;
        const size_t n = in.size() - i;
        const char* lf = static_cast<const char*>(std::memchr(p, '\n', n));
        if (lf == nullptr) {
          AppendBody(p, n);
          scan_ = p[n - 1] == '\r' ? Scan::kCr : Scan::kText;
          return in.size();
        }
        const size_t len = static_cast<size_t>(lf - p) + 1;
        AppendBody(p, len);
        line_len_ = 0;
        // In kText the octet before `p` was never a CR followed by this LF (kCr handles that).
        scan_ = len >= 2 && p[len - 2] == '\r' ? Scan::kLineStart : Scan::kText;
        i += len;
        break;
      }
    }
  }
  return in.size();
}

void ServerSession::AppendBody(const char* data, size_t size) {
  line_len_ += size;
  data_size_ += size;
  // RFC 5321 §4.5.3.1.6: the limit does not count a stuffing dot, which never reaches here.
  if (line_len_ > options_.max_text_line) {
    line_too_long_ = true;
  }
  if (options_.max_message_size != 0 && data_size_ > options_.max_message_size) {
    data_too_big_ = true;
  }
  if (data_too_big_ || line_too_long_) {
    // The message will be refused: keep reading to the end of the data, storing nothing.
    if (txn_.body.capacity() != 0) {
      std::string().swap(txn_.body);
    }
    return;
  }
  txn_.body.append(data, size);
}

void ServerSession::EndOfData() {
  if (data_too_big_) {
    // RFC 1870 §6.3 / RFC 5321 §4.5.3.1.9; RFC 3463 X.3.4 "message too big for system".
    Say("552 5.3.4 Error: message size exceeds fixed maximum message size");
    ResetTransaction();
    return;
  }
  if (line_too_long_) {
    // A content problem rather than a storage one, so not 552/5.3.4: 554 "transaction failed"
    // (RFC 5321 §4.3.2 allows it after the data) with RFC 3463 X.6.0 "other media error".
    Say("554 5.6.0 Error: message has a text line longer than " +
        std::to_string(options_.max_text_line) + " octets (RFC 5321 4.5.3.1.6)");
    ResetTransaction();
    return;
  }
  txn_.helo = helo_;
  ready_ = std::move(txn_);
  txn_ = ReceivedMessage{};
  state_ = State::kCommit;
}

// `line` ends in LF and may be an overlong line completed in one piece.
void ServerSession::HandleCommandLine(std::string_view line) {
  if (line.size() > options_.max_command_line) {
    Refuse("500 5.5.2 Error: line too long");  // RFC 5321 §4.5.3.1.4, §4.5.3.1.9
    return;
  }
  line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) {
    line.remove_suffix(1);
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
    Say("214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP");
  } else {
    // §4.2.4 500 "syntax error, command unrecognized"; RFC 3463 X.5.1 "invalid command".
    Refuse("500 5.5.1 Error: command not recognized");
  }
}

void ServerSession::Hello(std::string_view arg, bool extended) {
  if (arg.empty()) {
    Refuse(extended ? "501 5.5.4 Syntax: EHLO hostname" : "501 5.5.4 Syntax: HELO hostname");
    return;
  }
  // §4.1.4: EHLO/HELO resets the state as RSET does. The argument is kept as given: checking it
  // against the client's address is policy, not syntax.
  helo_ = std::string(arg);
  ResetTransaction();
  if (!extended) {
    Say("250 " + options_.hostname);
    return;
  }
  out_ += "250-" + options_.hostname + "\r\n";
  out_ += "250-PIPELINING\r\n";
  out_ += "250-SIZE " + std::to_string(options_.max_message_size) + "\r\n";
  out_ += "250-8BITMIME\r\n";
  out_ += "250 ENHANCEDSTATUSCODES\r\n";
}

void ServerSession::Mail(std::string_view arg) {
  if (state_ == State::kStart) {
    Refuse("503 5.5.1 Error: send HELO/EHLO first");
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
  Result<Path> path = ParsePathPrefix(arg, PathKind::kReverse, &used);
  if (!path) {
    if (IsAddressNotAscii(path.error())) {
      Say("550 5.6.7 Non-ASCII addresses not permitted for that sender");  // RFC 6531 §3.5
    } else {
      Refuse("501 5.1.7 Bad sender address syntax");
    }
    return;
  }
  std::vector<Param> params;
  if (!ParseParams(arg.substr(used), &params)) {
    Refuse("501 5.5.4 Bad MAIL parameter syntax");
    return;
  }
  bool has_size = false;
  bool has_body = false;
  size_t size = 0;
  bool body_8bit = false;
  for (const Param& param : params) {
    if (EqualsNoCase(param.keyword, "SIZE")) {  // RFC 1870 §3
      if (has_size || !param.has_value || !ParseSize(param.value, &size)) {
        Refuse("501 5.5.4 Bad SIZE parameter");
        return;
      }
      has_size = true;
    } else if (EqualsNoCase(param.keyword, "BODY")) {  // RFC 6152 §2
      if (has_body || !param.has_value ||
          !(EqualsNoCase(param.value, "7BIT") || EqualsNoCase(param.value, "8BITMIME"))) {
        Refuse("501 5.5.4 Bad BODY parameter");
        return;
      }
      has_body = true;
      body_8bit = EqualsNoCase(param.value, "8BITMIME");
    } else {
      Refuse("555 5.5.4 Unsupported MAIL parameter");  // §4.1.1.11
      return;
    }
  }
  if (has_size && options_.max_message_size != 0 && size > options_.max_message_size) {
    // RFC 1870 §6.1; a policy outcome, not a client error.
    Say("552 5.3.4 Message size exceeds fixed maximum message size");
    return;
  }
  txn_.mail_from = std::move(path->mailbox);
  txn_.body_8bit = body_8bit;
  state_ = State::kMail;
  Say("250 2.1.0 Ok");
}

void ServerSession::Rcpt(std::string_view arg) {
  if (state_ != State::kMail && state_ != State::kRcpt) {
    Refuse("503 5.5.1 Error: need MAIL command");
    return;
  }
  if (!ConsumePrefixNoCase(&arg, "TO:")) {
    Refuse("501 5.5.4 Syntax: RCPT TO:<address>");
    return;
  }
  arg = SkipSpaces(arg);
  size_t used = 0;
  Result<Path> path = ParsePathPrefix(arg, PathKind::kForward, &used);
  if (!path) {
    if (IsAddressNotAscii(path.error())) {
      Say("553 5.6.7 Non-ASCII addresses not permitted for that recipient");  // RFC 6531 §3.5
    } else {
      Refuse("501 5.1.3 Bad recipient address syntax");
    }
    return;
  }
  std::vector<Param> params;
  if (!ParseParams(arg.substr(used), &params)) {
    Refuse("501 5.5.4 Bad RCPT parameter syntax");
    return;
  }
  if (!params.empty()) {
    Refuse("555 5.5.4 Unsupported RCPT parameter");  // no RCPT extension yet (§4.1.1.11)
    return;
  }
  if (txn_.rcpt_to.size() >= options_.max_recipients) {
    // §4.5.3.1.8, §4.5.3.1.10: refuse the extra ones, keep the ones accepted.
    Say("452 4.5.3 Error: too many recipients");
    return;
  }
  if (!MayRelayTo(*path)) {
    Say("554 5.7.1 Relay access denied");
    return;
  }
  txn_.rcpt_to.push_back(std::move(path->mailbox));
  state_ = State::kRcpt;
  Say("250 2.1.5 Ok");
}

// The relay policy seam. For now every syntactically valid recipient is accepted. The relay
// check (a later issue) goes here: a recipient outside the local and relay domains, from a
// client not allowed to relay, gets 554 5.7.1 (RFC 5321 §3.6.2, RFC 3463 X.7.1).
bool ServerSession::MayRelayTo([[maybe_unused]] const Path& path) const {
  return true;
}

void ServerSession::Data(std::string_view arg) {
  if (state_ != State::kMail && state_ != State::kRcpt) {
    Refuse("503 5.5.1 Error: need MAIL command");
    return;
  }
  if (!arg.empty()) {
    Refuse("501 5.5.4 Syntax: DATA");
    return;
  }
  if (state_ == State::kMail) {
    // RFC 2920 §3.1 / RFC 5321 §3.3: DATA with no accepted recipient gets 554 (or 503).
    Refuse("554 5.5.1 Error: no valid recipients");
    return;
  }
  state_ = State::kData;
  scan_ = Scan::kLineStart;  // the line after DATA starts a line: "." right away ends the data
  line_len_ = 0;
  data_size_ = 0;
  data_too_big_ = false;
  line_too_long_ = false;
  Say("354 End data with <CR><LF>.<CR><LF>");
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
  if (closed_) {
    in_.clear();
    in_off_ = 0;
  } else if (state_ != State::kCommit) {
    in_.erase(0, in_off_);  // leaves an unfinished command line, or nothing
    in_off_ = 0;
  }
}

}  // namespace spate::smtp
