// delivery/client_session.h
//
// ClientSession runs the client side of one outbound SMTP connection, from greeting to QUIT:
// EHLO (falling back to HELO on a 5xx), then any number of mail transactions on the same
// connection (reuse), with RFC 2920 PIPELINING when the server offers it.
//
// Design (after Postfix smtp_proto.c): one command list, a send cursor and a receive cursor.
// With PIPELINING, MAIL, every RCPT and DATA go out in one write; each reply completes the
// oldest unanswered command. Without it, one command at a time. The body is dot-stuffed here
// (RFC 5321 §4.5.2) and ended with <CRLF>.<CRLF>. After a transaction that did not reach the
// end of data, RSET comes before the next MAIL.
//
// One round trip per message on a reused connection (Options::pipeline_next, with PIPELINING):
// once a transaction's body is in the output, ReadyForNext says a second transaction may be
// submitted behind it, and its MAIL, RCPT and DATA go out right behind the end of data (RFC 2920
// §3.1: message content may open a group). The replies to the end of data and to the next
// MAIL/RCPT/DATA then come back in one flight. At most two transactions are in flight: the one
// awaiting its end-of-data reply and the one behind it; replies come in order, so the first
// always finishes (TransactionDone) before the second gets any result. A server that refuses
// commands behind the end of data (Haraka 3.3 answers each "503 Bad sequence of commands -
// pipelined after end of DATA"; Postfix's pipelining check "554 5.5.0 ... synchronization"):
// the refusal is nobody's outcome, the same MAIL/RCPT/DATA go again once the end of data is
// answered, and the session pipelines no more transactions behind data.
//
// Outcomes per recipient: the RCPT reply if it was not 2xx, else the reply to the end of data
// (or to DATA, when DATA was refused). A MAIL refusal is every recipient's outcome. A 421
// (RFC 5321 §3.8), whenever it comes, is the outcome of every recipient still without one,
// and closes the session. A reply that breaks the protocol (malformed, unasked for, 3xx to
// anything but DATA, 2xx to DATA) aborts the session with a "protocol error: ..." reason.
//
// STARTTLS (RFC 3207): with Options::starttls and the keyword in the EHLO reply, STARTTLS goes
// before any transaction; its 220 gives StartTls, the caller runs the handshake (bytes after the
// 220 are dropped: nothing may be read in the clear past it, §6) and calls OnTlsEstablished(),
// and the session says EHLO again inside TLS (§4.2: what the first EHLO said is forgotten). With
// Options::require_tls, a server that does not offer it or refuses it ends the session with a
// 451 4.7.4 reason instead of a transaction in the clear.
//
// Timeouts are the caller's; awaiting() says which reply it waits for (RFC 5321 §4.5.3.2 gives
// the greeting and the end of data their own).
//
// Sans-I/O. Inputs: OnBytes(), Submit(), Quit(), Abort(), OnTlsEstablished(). Outputs:
// TakeOutput() (bytes to write) and TakeEvents(). The reactor owns the socket and the timers.
// Threading: not thread-safe; lives on the shard that owns the destination.
#pragma once

#include <cstdint>
#include <deque>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/result.h"
#include "core/smtp/reply.h"
#include "core/smtp/reply_parser.h"

namespace spate::delivery {

struct Envelope {
  std::string mail_from;  // without <>; empty for the null sender
  std::vector<std::string> rcpt_to;
  size_t size_hint = 0;    // sent as SIZE= when the server offers SIZE (RFC 1870 §6.1)
  bool body_8bit = false;  // BODY=8BITMIME when offered
  // RFC 6531 §3.4: the message needs SMTPUTF8. Sent as a MAIL parameter when the server offers
  // it; when it does not, every recipient fails with 550 5.6.7 and nothing is sent.
  bool smtputf8 = false;
  // RFC 3461 parameters, sent only when the server offers DSN (§4): then it takes over the
  // notices the sender asked for. `dsn_mail`: " RET=HDRS ENVID=..." for MAIL; `dsn_rcpt`:
  // " NOTIFY=... ORCPT=..." per recipient, or empty. Already encoded (xtext).
  std::string dsn_mail;
  std::vector<std::string> dsn_rcpt;
  // RFC 6710 §4: the message's priority (-9..9), passed on as MT-PRIORITY= to a server that
  // offers MT-PRIORITY, when it is not 0 (the default, which says nothing).
  int8_t priority = 0;
};

// The final outcome for one recipient of a submitted transaction: a value, not an error.
struct RecipientResult {
  uint32_t transaction_id = 0;
  uint32_t recipient_index = 0;  // into Envelope::rcpt_to
  smtp::Reply reply;             // decides delivered (2xx) / deferred (4xx) / failed (5xx)
};

// Every recipient of the transaction has its RecipientResult; its body is no longer borrowed.
struct TransactionDone {
  uint32_t transaction_id = 0;
};

// The session is idle: greeting and EHLO done, no transaction in flight. Submit() or Quit().
struct ReadyForTransaction {};

// Options::pipeline_next: the transaction in flight has sent its end of data; one more may be
// submitted now (can_submit_next()) and goes out behind it. Nothing else is expected: when no
// transaction is submitted, ReadyForTransaction follows the end-of-data reply as usual.
struct ReadyForNext {};

// The session is over: close the socket. `reply` is why (the QUIT reply, a refused greeting,
// or a synthetic reply with code 0 for a broken connection). Nothing is in flight any more.
struct Closed {
  smtp::Reply reply;
};

// The server said 220 to STARTTLS: start the TLS handshake on the connection, then call
// OnTlsEstablished() (or Abort() when it fails).
struct StartTls {};

using Event = std::variant<RecipientResult, TransactionDone, ReadyForTransaction, ReadyForNext,
                           Closed, StartTls>;

class ClientSession {
 public:
  struct Options {
    std::string helo_name = "localhost";
    bool starttls = false;        // ask for TLS when the server offers it
    bool require_tls = false;     // never a transaction in the clear
    std::string peer = "server";  // for reasons: "mx1.example.com[192.0.2.1]:25"
    bool pipeline_next = false;   // the next transaction behind the end of data (ReadyForNext)
  };

  explicit ClientSession(Options options);

  // Bytes from the server. A protocol violation (malformed reply) aborts the session: every
  // in-flight recipient gets a 4xx result, then Closed. Never returns an error to the caller.
  void OnBytes(std::string_view in);

  // Precondition: idle() (the last lifecycle event was ReadyForTransaction), or
  // can_submit_next() (after ReadyForNext). `body` is the canonical message (CRLF line ends, not
  // dot-stuffed), borrowed until TransactionDone for this id or until it has been copied into
  // the output (body_borrowed(id) turns false), whichever is first.
  uint32_t Submit(const Envelope& envelope, std::string_view body);
  bool body_borrowed(uint32_t transaction_id) const;
  // A transaction is in flight with its end of data sent, none behind it yet, and the server
  // pipelines: Submit() puts the next one right behind it.
  bool can_submit_next() const;

  // Precondition: idle (or closed: then a no-op). Sends QUIT; Closed follows its reply (or
  // Abort()).
  void Quit();

  // The connection broke or timed out: every in-flight recipient gets a synthetic 4xx result
  // (code 421, enhanced 4.4.2, text `why`), then TransactionDone and Closed. Idempotent.
  // Output not yet taken is dropped, and nothing is output afterwards.
  void Abort(std::string_view why);
  // The same, with `reply` as the Closed reason (a TLS failure: 451 4.7.5).
  void Fail(smtp::Reply reply);

  // The handshake after StartTls is done: EHLO again, inside TLS.
  void OnTlsEstablished();
  bool tls_active() const { return tls_active_; }
  // The server offered DSN (RFC 3461): the DSN parameters went on to it.
  bool dsn_offered() const { return dsn_; }
  // The server refused commands pipelined behind an end of data: no more of that.
  bool pipeline_next_refused() const { return next_refused_; }
  // Closed because TLS was required and the server did not offer it or refused it.
  bool tls_unavailable() const { return tls_unavailable_; }

  // Capabilities from the EHLO reply (valid after ReadyForTransaction).
  bool pipelining() const { return pipelining_; }
  size_t server_max_size() const { return server_max_size_; }  // 0: none announced

  bool idle() const;
  bool closed() const;

  // The reply the connection waits for now: that of the oldest command on the wire. RFC 5321
  // §4.5.3.2 gives the greeting and the end of data timeouts of their own (the caller's).
  enum class Awaiting : uint8_t { kNothing, kGreeting, kEndOfData, kReply };
  Awaiting awaiting() const;

  std::string TakeOutput();
  std::vector<Event> TakeEvents();

 private:
  enum class State : uint8_t {
    kGreeting,
    kEhlo,
    kHelo,
    kStartTls,      // STARTTLS sent
    kTlsHandshake,  // its 220 came: the caller runs the handshake
    kIdle,
    kTransaction,
    kQuit,
    kClosed
  };
  // What a command in the list is, i.e. what its reply decides.
  enum class Kind : uint8_t {
    kGreeting,  // the server's 220, outstanding from the start (RFC 5321 §3.1)
    kEhlo,
    kHelo,
    kStartTls,
    kRset,  // before the MAIL of a transaction after one that did not end its data
    kMail,
    kRcpt,
    kData,
    kEndOfData,       // the body and <CRLF>.<CRLF>
    kEndOfEmptyData,  // only ".\r\n": DATA got 354 but no RCPT was accepted (RFC 2920 §3.1)
    kQuit,
  };
  // One entry of the command list. Until it is sent, its text is [begin, end) of staged_.
  struct Command {
    Kind kind;
    uint32_t rcpt = 0;  // kRcpt: index into Envelope::rcpt_to
    uint32_t tx = 0;    // the transaction it belongs to (0: none)
    size_t begin = 0;
    size_t end = 0;
  };
  enum class RcptState : uint8_t { kPending, kAccepted, kDone };
  // One mail transaction in flight.
  struct Transaction {
    uint32_t id = 0;
    std::string_view body;         // borrowed until its 354 (or TransactionDone)
    std::vector<RcptState> rcpts;  // one per Envelope::rcpt_to
    uint32_t accepted = 0;         // recipients with a 2xx RCPT reply
    bool mail_refused = false;
    bool data_sent = false;   // the body and its end went into the output
    bool data_ended = false;  // the end of data got its reply
    // Sent behind the previous end of data: its commands' text is kept until the MAIL reply,
    // to go again if the server refused them for where they were (`resend`).
    bool behind = false;
    bool resend = false;
    std::string group;
    struct Part {
      Kind kind;
      uint32_t rcpt;
      size_t begin, end;  // in `group`
    };
    std::vector<Part> parts;
  };

  void OnReply(smtp::Reply reply);
  void OnTransactionReply(Kind kind, uint32_t rcpt, const smtp::Reply& reply);
  void ParseEhlo(const smtp::Reply& reply);
  // After EHLO (or HELO): STARTTLS, or ready, or closed for want of TLS.
  void AfterHello();
  // Appends a command to the list and sends it at once if the send cursor may advance.
  void Enqueue(Kind kind, uint32_t rcpt, std::initializer_list<std::string_view> text,
               uint32_t tx = 0);
  // Advances the send cursor: lock-step without PIPELINING, dropping commands made moot.
  void Pump();
  void Emit(Transaction& tx, uint32_t rcpt, const smtp::Reply& reply);
  // The oldest transaction is answered: TransactionDone; the one behind it (if any) is next,
  // else the session is idle.
  void FinishTransaction();
  // Every recipient without a result gets `reply`, in every transaction in flight; then their
  // TransactionDone. No-op outside one.
  void FailInFlight(const smtp::Reply& reply);
  void QuitAndClose(smtp::Reply reply);
  void Close(smtp::Reply reply);

  Options options_;
  State state_ = State::kGreeting;
  smtp::ReplyParser parser_;
  // The command list, oldest first: the first sent_ entries are on the wire (the receive
  // cursor is the front), the rest wait for the send cursor (lock-step mode only).
  std::deque<Command> commands_;
  size_t sent_ = 0;
  std::string staged_;  // text of unsent commands
  std::string out_;
  std::vector<Event> events_;
  bool pipelining_ = false;
  bool size_ = false;
  bool eightbit_ = false;
  bool smtputf8_ = false;
  bool dsn_ = false;
  bool mt_priority_ = false;
  bool starttls_offered_ = false;
  bool tls_active_ = false;
  bool tls_unavailable_ = false;
  size_t server_max_size_ = 0;
  uint32_t next_transaction_ = 1;
  bool need_rset_ = false;  // the last transaction did not reach the end of its data

  // The transaction in flight (state_ == kTransaction), and the one pipelined behind its end
  // of data (Options::pipeline_next).
  Transaction tx_;
  Transaction next_;
  bool has_next_ = false;
  bool next_refused_ = false;  // the server refused a transaction behind the end of data
};

}  // namespace spate::delivery
