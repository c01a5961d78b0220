// delivery/client_session.cc
#include "delivery/client_session.h"

#include <charconv>
#include <utility>

#include "core/check.h"
#include "core/smtp/ascii.h"
#include "core/smtp/errc.h"
#include "delivery/dot_stuff.h"

namespace spate::delivery {
namespace {

std::string ProtocolError(std::string_view what) {
  std::string s = "protocol error: ";
  s.append(what);
  return s;
}

// Own wording (not the category's message) so that the reason logged is stable.
std::string_view ParseErrorText(const std::error_code& ec) {
  if (ec == smtp::Errc::kMalformedReply) {
    return "malformed reply";
  }
  if (ec == smtp::Errc::kReplyTooLong) {
    return "reply too long";
  }
  return "unreadable reply";
}

constexpr uint16_t kServiceClosing = 421;  // RFC 5321 §3.8

// A reply to a MAIL sent behind an end of data that says where it was sent is the fault, not
// the message: 503 "bad sequence" (a MAIL after a finished transaction is never out of
// sequence otherwise); 500 to 502, a line the server did not read as the MAIL it was (Haraka
// 3.3 drops what it holds behind the end of data, a line that had half arrived among it, and
// answers the rest of that line 500 when it comes); or a text about pipelining or
// synchronisation. Sent again after the end-of-data reply, a MAIL the server does refuse gets
// its refusal then: one round trip more, where a bounce for a reply to half a line would be
// wrong.
bool RefusesPipelining(const smtp::Reply& reply) {
  if (reply.code >= 500 && reply.code <= 503)
    return true;
  if (reply.code / 100 != 5)
    return false;
  std::string lower(reply.text);
  for (char& ch : lower)
    ch = smtp::AsciiLower(ch);
  return lower.find("pipelin") != std::string::npos || lower.find("synchroni") != std::string::npos;
}

}  // namespace

ClientSession::Awaiting ClientSession::awaiting() const {
  if (sent_ == 0 || state_ == State::kClosed)
    return Awaiting::kNothing;
  switch (commands_.front().kind) {
    case Kind::kGreeting:
      return Awaiting::kGreeting;
    case Kind::kEndOfData:
    case Kind::kEndOfEmptyData:
      return Awaiting::kEndOfData;
    default:
      return Awaiting::kReply;
  }
}

ClientSession::ClientSession(Options options) : options_(std::move(options)) {
  // RFC 5321 §3.1: the server speaks first; its greeting answers the connection.
  commands_.push_back(Command{Kind::kGreeting});
  sent_ = 1;
}

void ClientSession::OnBytes(std::string_view in) {
  while (!in.empty() && state_ != State::kClosed && state_ != State::kTlsHandshake) {
    Result<size_t> used = parser_.Feed(in);
    if (!used) {
      Abort(ProtocolError(ParseErrorText(used.error())));
      return;
    }
    in.remove_prefix(*used);
    if (std::optional<smtp::Reply> reply = parser_.TakeReply()) {
      OnReply(std::move(*reply));
    } else if (*used == 0) {
      break;  // unreachable: the parser only stops early on a complete reply
    }
  }
}

void ClientSession::OnReply(smtp::Reply reply) {
  // RFC 5321 §3.8: 421 may answer any command, or come unasked, and the server then closes
  // the connection. Whatever is still unanswered gets it.
  if (reply.code == kServiceClosing) {
    FailInFlight(reply);
    Close(std::move(reply));
    return;
  }
  if (sent_ == 0) {
    Abort(ProtocolError("reply with no command outstanding: " + reply.ToString()));
    return;
  }
  const Command cmd = commands_.front();
  commands_.pop_front();
  --sent_;
  // RFC 5321 §4.3.2: only DATA has an intermediate (3yz) reply. A 3yz anywhere else would
  // pass for success (Reply::positive()), so it is a protocol error, never an outcome.
  if (reply.code / 100 == 3 && cmd.kind != Kind::kData && cmd.kind != Kind::kQuit) {
    Abort(ProtocolError("unexpected intermediate reply: " + reply.ToString()));
    return;
  }
  switch (cmd.kind) {
    case Kind::kGreeting:
      if (reply.code / 100 == 2) {
        state_ = State::kEhlo;
        Enqueue(Kind::kEhlo, 0, {"EHLO ", options_.helo_name, "\r\n"});
      } else {
        QuitAndClose(std::move(reply));  // §3.1: after a 554 greeting, the client sends QUIT
      }
      break;
    case Kind::kEhlo:
      if (reply.code / 100 == 2) {
        ParseEhlo(reply);
        AfterHello();
      } else if (reply.code / 100 == 5) {
        // §3.2: a server that does not know EHLO answers 5xx; fall back to HELO.
        state_ = State::kHelo;
        Enqueue(Kind::kHelo, 0, {"HELO ", options_.helo_name, "\r\n"});
      } else {
        QuitAndClose(std::move(reply));
      }
      break;
    case Kind::kHelo:
      if (reply.code / 100 == 2) {
        starttls_offered_ = false;  // HELO has no extensions
        AfterHello();
      } else {
        QuitAndClose(std::move(reply));
      }
      break;
    case Kind::kStartTls:
      if (reply.code == 220) {
        // RFC 3207 §5: the handshake starts now. Anything the server sent behind the 220 was
        // sent in the clear before TLS: it is dropped, never taken as a reply (§6).
        state_ = State::kTlsHandshake;
        parser_ = smtp::ReplyParser();
        events_.emplace_back(StartTls{});
        return;
      }
      if (options_.require_tls) {
        tls_unavailable_ = true;
        QuitAndClose(smtp::Reply{
            451, "4.7.4",
            "TLS is required, but " + options_.peer + " refused STARTTLS: " + reply.ToString()});
      } else {
        state_ = State::kIdle;  // opportunistic: on in the clear
        events_.emplace_back(ReadyForTransaction{});
      }
      break;
    case Kind::kQuit:
      Close(std::move(reply));
      break;
    case Kind::kRset:
      break;  // §4.1.1.5: its only purpose is the reset; 421 was handled above
    case Kind::kMail:
    case Kind::kRcpt:
    case Kind::kData:
    case Kind::kEndOfData:
    case Kind::kEndOfEmptyData:
      OnTransactionReply(cmd.kind, cmd.rcpt, reply);
      break;
  }
  if (state_ == State::kClosed) {
    return;
  }
  Pump();
  // The oldest transaction is over once none of its commands is outstanding (the next one's
  // may be, behind it).
  if (state_ == State::kTransaction && (commands_.empty() || commands_.front().tx != tx_.id)) {
    FinishTransaction();
  }
}

void ClientSession::OnTransactionReply(Kind kind, uint32_t rcpt, const smtp::Reply& reply) {
  SPATE_CHECK(state_ == State::kTransaction);
  const bool ok = reply.code / 100 == 2;
  switch (kind) {
    case Kind::kMail:
      if (!ok && tx_.behind && RefusesPipelining(reply)) {
        // Refused for going behind the end of data: its RCPT and DATA replies are consumed
        // without effect, and the same commands go again (FinishTransaction).
        tx_.resend = true;
        next_refused_ = true;
        break;
      }
      tx_.group.clear();
      tx_.parts.clear();
      if (!ok) {
        // The MAIL refusal is every recipient's outcome. With PIPELINING the RCPT and DATA
        // replies are still to come and are consumed below without effect.
        tx_.mail_refused = true;
        for (uint32_t i = 0; i < tx_.rcpts.size(); ++i) {
          Emit(tx_, i, reply);
        }
      }
      break;
    case Kind::kRcpt:
      if (tx_.mail_refused || tx_.resend) {
        break;
      }
      if (ok) {
        tx_.rcpts[rcpt] = RcptState::kAccepted;
        ++tx_.accepted;
      } else {
        Emit(tx_, rcpt, reply);
      }
      break;
    case Kind::kData:
      if (reply.code / 100 == 3) {
        // RFC 2920 §3.1: DATA was the last command of the group, so nothing is outstanding.
        SPATE_CHECK(commands_.empty() && sent_ == 0);
        if (tx_.accepted > 0) {
          AppendDotStuffed(out_, tx_.body);  // §4.5.2, straight into the output
          tx_.body = {};                     // no longer borrowed: the caller may let it go
          commands_.push_back(Command{Kind::kEndOfData, 0, tx_.id});
          tx_.data_sent = true;
          if (options_.pipeline_next && pipelining_ && !next_refused_) {
            events_.emplace_back(ReadyForNext{});  // RFC 2920 §3.1: content may open a group
          }
        } else {
          // RFC 2920 §3.1: DATA was accepted though no recipient was; send an empty message
          // (just the terminator) and ignore its reply.
          out_.append(".\r\n");
          commands_.push_back(Command{Kind::kEndOfEmptyData, 0, tx_.id});
        }
        sent_ = 1;
      } else if (ok) {
        Abort(ProtocolError("2xx reply to DATA: " + reply.ToString()));
      } else if (!tx_.resend) {
        for (uint32_t i = 0; i < tx_.rcpts.size(); ++i) {
          if (tx_.rcpts[i] == RcptState::kAccepted) {
            Emit(tx_, i, reply);
          }
        }
      }
      break;
    case Kind::kEndOfData:
      // §4.1.1.4: the final reply decides for every recipient accepted at RCPT.
      tx_.data_ended = true;
      for (uint32_t i = 0; i < tx_.rcpts.size(); ++i) {
        if (tx_.rcpts[i] == RcptState::kAccepted) {
          Emit(tx_, i, reply);
        }
      }
      break;
    case Kind::kEndOfEmptyData:
      break;
    default:
      SPATE_CHECK(false);
  }
}

void ClientSession::AfterHello() {
  if (!tls_active_ && options_.starttls && starttls_offered_) {
    state_ = State::kStartTls;
    Enqueue(Kind::kStartTls, 0, {"STARTTLS\r\n"});
    return;
  }
  if (!tls_active_ && options_.require_tls) {
    tls_unavailable_ = true;
    QuitAndClose(smtp::Reply{451, "4.7.4",
                             "TLS is required, but " + options_.peer + " does not offer STARTTLS"});
    return;
  }
  state_ = State::kIdle;
  events_.emplace_back(ReadyForTransaction{});
}

void ClientSession::OnTlsEstablished() {
  if (state_ != State::kTlsHandshake)
    return;
  tls_active_ = true;
  // RFC 3207 §4.2: the client must discard what it knew of the server and say EHLO again.
  pipelining_ = size_ = eightbit_ = smtputf8_ = dsn_ = mt_priority_ = starttls_offered_ = false;
  server_max_size_ = 0;
  state_ = State::kEhlo;
  Enqueue(Kind::kEhlo, 0, {"EHLO ", options_.helo_name, "\r\n"});
}

void ClientSession::ParseEhlo(const smtp::Reply& reply) {
  // RFC 5321 §4.1.1.1: the first line is the domain and greeting; each further line is
  // "keyword [params]". Keywords are case-insensitive (§2.4).
  pipelining_ = size_ = eightbit_ = smtputf8_ = dsn_ = mt_priority_ = starttls_offered_ = false;
  server_max_size_ = 0;
  std::string_view text = reply.text;
  size_t nl = text.find('\n');
  while (nl != std::string_view::npos) {
    text.remove_prefix(nl + 1);
    nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) {
      line.remove_suffix(1);
    }
    const size_t sp = line.find(' ');
    const std::string_view keyword = line.substr(0, sp);
    std::string_view param = sp == std::string_view::npos ? std::string_view() : line.substr(sp);
    while (!param.empty() && param.front() == ' ') {
      param.remove_prefix(1);
    }
    if (smtp::EqualsNoCase(keyword, "PIPELINING")) {  // RFC 2920
      pipelining_ = true;
    } else if (smtp::EqualsNoCase(keyword, "8BITMIME")) {  // RFC 6152
      eightbit_ = true;
    } else if (smtp::EqualsNoCase(keyword, "SMTPUTF8")) {  // RFC 6531 §3.2
      smtputf8_ = true;
    } else if (smtp::EqualsNoCase(keyword, "DSN")) {  // RFC 3461 §4
      dsn_ = true;
    } else if (smtp::EqualsNoCase(keyword, "MT-PRIORITY")) {  // RFC 6710 §3, any policy
      mt_priority_ = true;
    } else if (smtp::EqualsNoCase(keyword, "STARTTLS")) {  // RFC 3207 §4
      starttls_offered_ = true;
    } else if (smtp::EqualsNoCase(keyword, "SIZE")) {  // RFC 1870 §4: "SIZE [limit]", 0 is none
      size_ = true;
      size_t limit = 0;
      const auto [end, ec] = std::from_chars(param.data(), param.data() + param.size(), limit);
      server_max_size_ = ec == std::errc() && end == param.data() + param.size() ? limit : 0;
    }
  }
}

bool ClientSession::body_borrowed(uint32_t transaction_id) const {
  if (state_ != State::kTransaction)
    return false;
  if (tx_.id == transaction_id)
    return tx_.body.data() != nullptr;
  return has_next_ && next_.id == transaction_id && next_.body.data() != nullptr;
}

bool ClientSession::can_submit_next() const {
  return state_ == State::kTransaction && options_.pipeline_next && pipelining_ && !next_refused_ &&
         !has_next_ && tx_.data_sent && !tx_.data_ended;
}

uint32_t ClientSession::Submit(const Envelope& envelope, std::string_view body) {
  const bool behind = can_submit_next();
  SPATE_CHECK(behind || (state_ == State::kIdle && commands_.empty()));
  Transaction& tx = behind ? next_ : tx_;
  tx = Transaction{};
  tx.id = next_transaction_++;
  tx.body = body;
  tx.rcpts.assign(envelope.rcpt_to.size(), RcptState::kPending);
  // Settled before a byte is sent (no recipient, or every one refused): its results and
  // TransactionDone, and the session is as it was (whatever RSET was pending still is).
  auto settle = [&](const smtp::Reply* refused) {
    if (refused != nullptr) {
      for (uint32_t i = 0; i < tx.rcpts.size(); ++i) {
        Emit(tx, i, *refused);
      }
    }
    const uint32_t id = tx.id;
    tx = Transaction{};
    events_.emplace_back(TransactionDone{id});
    if (behind) {
      events_.emplace_back(ReadyForNext{});
    } else {
      events_.emplace_back(ReadyForTransaction{});
    }
    return id;
  };
  if (envelope.rcpt_to.empty()) {
    return settle(nullptr);  // nothing to deliver, nothing to say
  }
  auto refuse_all = [&](const smtp::Reply& refused) { return settle(&refused); };
  if (envelope.smtputf8 && !smtputf8_) {
    // RFC 6531 §3.4: a message that needs SMTPUTF8 must not go to a server without it; there
    // is no downgrade, so the recipients fail (5.6.7, RFC 6531 §3.5).
    return refuse_all(
        smtp::Reply{550, "5.6.7", "SMTPUTF8 is required but the server does not offer it"});
  }
  const size_t message_size = envelope.size_hint > 0 ? envelope.size_hint : body.size();
  if (size_ && server_max_size_ != 0 && message_size > server_max_size_) {
    // RFC 1870 §6.1: the server said what it takes; a larger message is not sent to be refused
    // after its data, it fails at once (552, RFC 3463 X.3.4 "message too big for system").
    return refuse_all(smtp::Reply{552, "5.3.4",
                                  "message of " + std::to_string(message_size) +
                                      " octets exceeds the server's SIZE " +
                                      std::to_string(server_max_size_)});
  }
  state_ = State::kTransaction;
  has_next_ = behind;
  const uint32_t id = tx.id;
  const size_t group_begin = out_.size();
  if (need_rset_ && !behind) {
    // RFC 2920 §3.1: RSET may be pipelined ahead of MAIL. (Behind an end of data none is
    // needed: the end of data ends the transaction whatever its reply, RFC 5321 §4.1.1.4.)
    Enqueue(Kind::kRset, 0, {"RSET\r\n"}, id);
    need_rset_ = false;
  }
  // RFC 1870 §6.1 (SIZE=) and RFC 6152 §3 (BODY=8BITMIME), only when the server offers them.
  // Without 8BITMIME an 8-bit body goes as it is: converting it is the caller's business.
  char size_param[32] = " SIZE=";
  std::string_view size_text;
  if (size_ && envelope.size_hint > 0) {
    char* const first = size_param + 6;
    const auto res = std::to_chars(first, size_param + sizeof(size_param), envelope.size_hint);
    size_text = std::string_view(size_param, static_cast<size_t>(res.ptr - size_param));
  }
  const std::string_view body_param =
      eightbit_ && envelope.body_8bit ? std::string_view(" BODY=8BITMIME") : std::string_view();
  const std::string_view utf8_param =
      envelope.smtputf8 ? std::string_view(" SMTPUTF8") : std::string_view();
  const std::string_view dsn_param =
      dsn_ ? std::string_view(envelope.dsn_mail) : std::string_view();
  char priority_param[24] = " MT-PRIORITY=";
  std::string_view priority_text;
  if (mt_priority_ && envelope.priority != 0 && envelope.priority >= -9 && envelope.priority <= 9) {
    char* p = priority_param + 13;
    if (envelope.priority < 0)
      *p++ = '-';
    *p++ =
        static_cast<char>('0' + (envelope.priority < 0 ? -envelope.priority : envelope.priority));
    priority_text = std::string_view(priority_param, static_cast<size_t>(p - priority_param));
  }
  Enqueue(Kind::kMail, 0,
          {"MAIL FROM:<", envelope.mail_from, ">", size_text, body_param, utf8_param, dsn_param,
           priority_text, "\r\n"},
          id);
  for (uint32_t i = 0; i < envelope.rcpt_to.size(); ++i) {
    const std::string_view rcpt_param = dsn_ && i < envelope.dsn_rcpt.size()
                                            ? std::string_view(envelope.dsn_rcpt[i])
                                            : std::string_view();
    Enqueue(Kind::kRcpt, i, {"RCPT TO:<", envelope.rcpt_to[i], ">", rcpt_param, "\r\n"}, id);
  }
  Enqueue(Kind::kData, 0, {"DATA\r\n"}, id);  // RFC 2920 §3.1: the last command of the group
  if (behind) {
    // Kept until the MAIL reply says the server took them where they were.
    tx.behind = true;
    tx.group.assign(out_, group_begin, std::string::npos);
    for (size_t i = commands_.size() - (tx.rcpts.size() + 2); i < commands_.size(); ++i) {
      const Command& cmd = commands_[i];
      tx.parts.push_back(
          Transaction::Part{cmd.kind, cmd.rcpt, cmd.begin - group_begin, cmd.end - group_begin});
    }
  }
  return id;
}

void ClientSession::Quit() {
  if (state_ == State::kClosed) {
    return;
  }
  SPATE_CHECK(state_ == State::kIdle);
  state_ = State::kQuit;
  Enqueue(Kind::kQuit, 0, {"QUIT\r\n"});
}

void ClientSession::Abort(std::string_view why) {
  Fail(smtp::Reply{0, "", std::string(why)});
}

void ClientSession::Fail(smtp::Reply reply) {
  if (state_ == State::kClosed) {
    return;
  }
  FailInFlight(smtp::Reply{kServiceClosing, "4.4.2", reply.text});
  out_.clear();  // the connection is gone: unsent bytes go nowhere
  Close(std::move(reply));
}

bool ClientSession::idle() const {
  return state_ == State::kIdle;
}

bool ClientSession::closed() const {
  return state_ == State::kClosed;
}

std::string ClientSession::TakeOutput() {
  return std::exchange(out_, std::string());
}

std::vector<Event> ClientSession::TakeEvents() {
  return std::exchange(events_, {});
}

void ClientSession::Enqueue(Kind kind, uint32_t rcpt, std::initializer_list<std::string_view> text,
                            uint32_t tx) {
  // With PIPELINING the send cursor runs ahead freely (the caller only builds groups that
  // RFC 2920 §3.1 allows); without it, a command goes out when nothing is outstanding.
  const bool send_now = sent_ == commands_.size() && (pipelining_ || commands_.empty());
  std::string& sink = send_now ? out_ : staged_;
  Command cmd{kind, rcpt, tx, sink.size(), 0};
  for (std::string_view part : text) {
    sink.append(part);
  }
  cmd.end = sink.size();
  commands_.push_back(cmd);
  if (send_now) {
    ++sent_;
  }
}

void ClientSession::Pump() {
  while (sent_ < commands_.size() && (pipelining_ || sent_ == 0)) {
    const Command& cmd = commands_[sent_];
    // Lock-step only (pipelined groups are sent whole): skip what earlier replies made moot,
    // RCPT after a refused MAIL and DATA without an accepted recipient.
    const bool moot = (cmd.kind == Kind::kRcpt && tx_.mail_refused) ||
                      (cmd.kind == Kind::kData && (tx_.mail_refused || tx_.accepted == 0));
    if (moot) {
      commands_.erase(commands_.begin() + static_cast<std::ptrdiff_t>(sent_));
      continue;
    }
    out_.append(staged_, cmd.begin, cmd.end - cmd.begin);
    ++sent_;
  }
  if (sent_ == commands_.size()) {
    staged_.clear();
  }
}

void ClientSession::Emit(Transaction& tx, uint32_t rcpt, const smtp::Reply& reply) {
  SPATE_CHECK(tx.rcpts[rcpt] != RcptState::kDone);
  tx.rcpts[rcpt] = RcptState::kDone;
  events_.emplace_back(RecipientResult{tx.id, rcpt, reply});
}

void ClientSession::FinishTransaction() {
  if (tx_.resend) {
    // The end of data before it is answered: now the same commands go where any server takes
    // them, at the start of a group.
    tx_.resend = tx_.behind = false;
    tx_.rcpts.assign(tx_.rcpts.size(), RcptState::kPending);
    tx_.accepted = 0;
    const std::string group = std::move(tx_.group);
    const std::vector<Transaction::Part> parts = std::move(tx_.parts);
    tx_.group.clear();
    tx_.parts.clear();
    for (const Transaction::Part& part : parts) {
      Enqueue(part.kind, part.rcpt,
              {std::string_view(group).substr(part.begin, part.end - part.begin)}, tx_.id);
    }
    return;
  }
  for (RcptState s : tx_.rcpts) {
    SPATE_CHECK(s == RcptState::kDone);
  }
  events_.emplace_back(TransactionDone{tx_.id});
  if (has_next_) {
    // Its end of data was sent, so the server's transaction is over (§4.1.1.4): no RSET.
    tx_ = std::move(next_);
    next_ = Transaction{};
    has_next_ = false;
    return;
  }
  // §4.1.1.4: the end of data clears the server's transaction whatever the reply; anything
  // short of it leaves state behind that RSET clears (§4.1.1.5).
  need_rset_ = !tx_.data_ended;
  tx_ = Transaction{};
  state_ = State::kIdle;
  events_.emplace_back(ReadyForTransaction{});
}

void ClientSession::FailInFlight(const smtp::Reply& reply) {
  if (state_ != State::kTransaction) {
    return;
  }
  for (Transaction* tx : {&tx_, &next_}) {
    if (tx == &next_ && !has_next_)
      break;
    for (uint32_t i = 0; i < tx->rcpts.size(); ++i) {
      if (tx->rcpts[i] != RcptState::kDone) {
        Emit(*tx, i, reply);
      }
    }
    events_.emplace_back(TransactionDone{tx->id});
  }
  tx_ = Transaction{};
  next_ = Transaction{};
  has_next_ = false;
}

void ClientSession::QuitAndClose(smtp::Reply reply) {
  out_.append("QUIT\r\n");
  Close(std::move(reply));
}

void ClientSession::Close(smtp::Reply reply) {
  state_ = State::kClosed;
  commands_.clear();
  sent_ = 0;
  staged_.clear();
  events_.emplace_back(Closed{std::move(reply)});
}

}  // namespace spate::delivery
