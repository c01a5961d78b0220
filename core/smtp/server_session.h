// core/smtp/server_session.h
//
// ServerSession is the server side of one inbound SMTP connection (RFC 5321) as a pure state
// machine: bytes in, reply bytes and accepted messages out. No sockets, timers or clocks inside;
// the reactor moves the bytes, the spool makes messages durable.
//
// Commands: EHLO, HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, VRFY (252, RFC 5321 §3.5.3), HELP.
// Extensions advertised in EHLO: PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152),
// ENHANCEDSTATUSCODES (RFC 2034). Every reply carries an enhanced status code except the 220
// greeting, the 250 to EHLO/HELO and the 354 (RFC 2034 §3).
//
// Contract:
//  - Feed() takes any split of the input (byte by byte, whole, random) with the same result.
//  - Pipelined commands are answered in order; replies accumulate in the output until the
//    reactor takes them (it does so once the input it had is consumed: RFC 2920 §3.2).
//  - When the data phase ends (only <CRLF>.<CRLF> ends it, RFC 5321 §4.1.1.4), the message is
//    handed out by TakeMessage() and the session stops consuming input until OnCommitted():
//    the 250 that follows is only sent once the spool says the message is durable. Input fed
//    meanwhile is buffered as is: the reactor should stop reading while awaiting_commit().
//  - A command line may end in CRLF or, leniently, a bare LF. In the data phase only CRLF ends a
//    line: a bare CR or LF never makes a "." line (SMTP smuggling defence).
//  - Limits (command line 512 octets §4.5.3.1.4, text line §4.5.3.1.6, message size RFC 1870,
//    recipients §4.5.3.1.8) are answered with their codes; the session never grows without bound:
//    command line too long: 500 5.5.2 (the line is skipped); message too big: 552 5.3.4; a text
//    line too long: 554 5.6.0 (both after the final ".", the transaction is dropped).
//  - max_errors refused commands (500, 501, 503, 555, 554 to DATA) since the last stored message:
//    421 4.7.0 and close.
// Threading: not thread-safe; lives on the shard that accepted the connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace spate::smtp {

struct Path;  // core/smtp/address.h

// A message whose data phase completed, ready for the spool.
struct ReceivedMessage {
  std::string helo;                  // the EHLO/HELO argument
  std::string mail_from;             // the reverse-path without <>; empty for the null sender
  std::vector<std::string> rcpt_to;  // forward-paths without <>, in the order accepted
  std::string body;                  // dot-unstuffed, CRLF line ends, without the final ".CRLF"
  bool body_8bit = false;            // MAIL ... BODY=8BITMIME

  friend bool operator==(const ReceivedMessage&, const ReceivedMessage&) = default;
};

class ServerSession {
 public:
  struct Options {
    std::string hostname = "localhost";  // in the greeting and EHLO reply
    size_t max_message_size = 50 << 20;  // advertised as SIZE; 552 5.3.4 beyond it; 0: none
    size_t max_recipients = 100;         // the next RCPT gets 452 4.5.3
    size_t max_command_line = 512;       // with CRLF; longer: 500 5.5.2
    size_t max_text_line = 1000;         // with CRLF; longer: message refused, 554 5.6.0
    size_t max_errors = 20;              // bad commands, then 421 4.7.0 and close
  };

  explicit ServerSession(Options options);

  // Queues the 220 greeting. Call once, right after the connection is accepted.
  void Start();

  // Consumes `in`. Input after a completed data phase stays buffered until OnCommitted().
  void Feed(std::string_view in);

  // The message whose data phase just completed, once. While one is outstanding the session
  // is paused (awaiting_commit() is true).
  std::optional<ReceivedMessage> TakeMessage();
  bool awaiting_commit() const;

  // The spool's answer for the outstanding message: its queue id once durable (250 2.0.0 Ok:
  // queued as <id>), or an error (451 4.3.0, the client may retry). Resumes buffered input.
  void OnCommitted(Result<std::string> queue_id);

  // The command timeout expired: queues 421 4.4.2 and closes (RFC 5321 §4.5.3.2).
  void OnTimeout();

  // Bytes to send. Empty when there is nothing.
  std::string TakeOutput();

  // True once QUIT was answered or the session gave up (421): send the output, then close.
  bool closed() const;

 private:
  // The implementation is in server_session.cc; see there for the state machine.
  enum class State : uint8_t {
    kStart,    // no EHLO/HELO yet
    kGreeted,  // EHLO/HELO done, no transaction
    kMail,     // MAIL accepted
    kRcpt,     // at least one RCPT accepted
    kData,     // after 354: the input is message text
    kCommit,   // data phase ended; paused until OnCommitted()
  };
  // Where the data-phase scanner stands. Only CRLF starts a line (RFC 5321 §2.3.8, §4.1.1.4).
  enum class Scan : uint8_t {
    kLineStart,  // right after CRLF (or the DATA command)
    kDot,        // a '.' at line start, not yet stored
    kDotCr,      // ".\r" at line start, not yet stored
    kText,       // inside a line
    kCr,         // inside a line, the last octet (already stored) was '\r'
  };

  size_t Consume(std::string_view in);
  size_t ConsumeData(std::string_view in);
  void AppendBody(const char* data, size_t size);
  void EndOfData();
  void HandleCommandLine(std::string_view line);
  void Hello(std::string_view arg, bool extended);
  void Mail(std::string_view arg);
  void Rcpt(std::string_view arg);
  void Data(std::string_view arg);
  bool MayRelayTo(const Path& path) const;
  void Say(std::string_view reply);
  void Refuse(std::string_view reply);
  void ResetTransaction();
  void ResumeBuffered();

  Options options_;
  State state_ = State::kStart;
  bool closed_ = false;
  // Unconsumed input. Outside kCommit: the start of a command line, shorter than
  // max_command_line, with in_off_ == 0. In kCommit: everything fed since, from in_off_ on.
  std::string in_;
  size_t in_off_ = 0;
  bool discarding_ = false;  // skipping the rest of an overlong command line, up to its LF
  std::string out_;          // replies not yet taken
  std::string helo_;         // the EHLO/HELO argument; empty before one was accepted
  ReceivedMessage txn_;      // the transaction being built (helo is filled in at the end)
  std::optional<ReceivedMessage> ready_;
  size_t errors_ = 0;  // refused commands since the session started or last stored a message
  // Data-phase scanning state.
  Scan scan_ = Scan::kLineStart;
  size_t line_len_ = 0;   // octets of the current text line, without a stuffing dot
  size_t data_size_ = 0;  // octets of the (unstuffed) message so far
  bool data_too_big_ = false;
  bool line_too_long_ = false;
};

}  // namespace spate::smtp
