// core/smtp/server_session.h
//
// ServerSession is the server side of one inbound SMTP connection (RFC 5321) as a pure state
// machine: bytes in, reply bytes and accepted messages out. No sockets, timers or clocks inside;
// the reactor moves the bytes, the spool makes messages durable.
//
// Commands: EHLO, HELO, MAIL, RCPT, DATA, BDAT, RSET, NOOP, QUIT, VRFY (252, RFC 5321 §3.5.3),
// HELP, STARTTLS, AUTH.
// Extensions advertised in EHLO: PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152),
// STARTTLS (RFC 3207), AUTH PLAIN LOGIN (RFC 4954, 4616), ENHANCEDSTATUSCODES (RFC 2034),
// DSN (RFC 3461), MT-PRIORITY MIXER (RFC 6710), SMTPUTF8 (RFC 6531), CHUNKING (RFC 3030). Every
// reply carries an enhanced status code except the 220 greeting, the 250 to EHLO/HELO, the 354
// and the 334 (RFC 2034 §3).
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
//    line: a bare CR or LF never makes a "." line (SMTP smuggling defence). A message holding a
//    bare CR or LF (DATA or BDAT) is refused (550 5.6.0) or stored with CRLF in its place, as
//    Options::bare_lf says; one holding a NUL is refused (550 5.6.0) or stored without it, as
//    Options::nul says. A refused DATA or BDAT leaves the session wanting RSET (or EHLO/HELO):
//    whatever the client pipelined behind it can never start a transaction (RFC 2920 §3.1).
//  - BDAT chunks are read by their announced size, whatever they hold (RFC 3030 §2); a BDAT line
//    whose size cannot be parsed loses the framing: 501 5.5.4 and close.
//  - Input fed before Start() (the client spoke before the greeting): Start() answers
//    554 5.5.0 instead of 220 and closes (RFC 5321 §3.1 allows 554 in place of the greeting).
//  - Relay control at RCPT: see Options::client_may_relay.
//  - MT-PRIORITY (RFC 6710): parsed from anyone (a bad value or a second one: 501 5.5.4), kept
//    only from a client trusted with it, authenticated or in the relay networks (RFC 6710
//    §4.1: a server need not honour a priority from a client it does not trust); anyone else's
//    message is handled as if it had none (ReceivedMessage::priority).
//  - Limits (command line 512 octets §4.5.3.1.4, longer for MAIL and RCPT by what their
//    parameters add, RFC 3461 §5.4, RFC 4954 §5; AUTH responses 12288, RFC 4954 §4; text line
//    §4.5.3.1.6, message size RFC 1870, recipients §4.5.3.1.8) are answered with their codes; the
//    session never grows without bound: command line too long: 500 5.5.2 (the line is skipped);
//    message too big: 552 5.3.4 (a BDAT chunk: at the chunk that goes over); a text line too
//    long: 554 5.6.0 (after the final "." or BDAT LAST; the transaction is dropped).
//  - max_errors refused commands (500-504, 535, 538, 555, refused DATA/BDAT) since the last
//    stored message: 421 4.7.0 and close.
// Threading: not thread-safe; lives on the shard that accepted the connection.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"
#include "core/smtp/internal/sasl.h"
#include "core/smtp/internal/trace_headers.h"

namespace spate::smtp {

struct Path;  // core/smtp/address.h

// RFC 3461 DSN parameters of one recipient (RCPT ... NOTIFY= ORCPT=).
struct DsnRecipient {
  uint8_t notify = 0;  // bit set of kNotify*; 0: not given (the default: FAILURE,DELAY)
  std::string orcpt;   // "rfc822;user@example.com" as given (xtext decoded), or empty

  friend bool operator==(const DsnRecipient&, const DsnRecipient&) = default;
};
inline constexpr uint8_t kNotifyNever = 1;
inline constexpr uint8_t kNotifySuccess = 2;
inline constexpr uint8_t kNotifyFailure = 4;
inline constexpr uint8_t kNotifyDelay = 8;

// A message whose data phase completed, ready for the spool.
struct ReceivedMessage {
  std::string helo;                  // the EHLO/HELO argument
  std::string mail_from;             // the reverse-path without <>; empty for the null sender
  std::vector<std::string> rcpt_to;  // forward-paths without <>, in the order accepted
  std::string body;                  // dot-unstuffed, CRLF line ends, without the final ".CRLF"
                                     // (headers the session adds, e.g. Received:, included)
  bool body_8bit = false;            // MAIL ... BODY=8BITMIME
  bool smtputf8 = false;             // MAIL ... SMTPUTF8 (RFC 6531)
  // RFC 3461 §4.3, §4.4: RET and ENVID of MAIL; NOTIFY/ORCPT per recipient (same order as
  // rcpt_to). Kept with the message for the DSNs to come.
  enum class Ret : uint8_t { kUnset, kFull, kHdrs } ret = Ret::kUnset;
  std::string envid;
  std::vector<DsnRecipient> dsn;
  std::string auth_user;  // the authenticated identity (RFC 4954), empty when none
  // RFC 6710 MT-PRIORITY of MAIL, -9 to 9 (0 normal), when the client gave one and may set it
  // (authenticated, or Options::client_may_relay); none otherwise, so the glue can tell "no
  // priority asked" (its own default applies) from an explicit 0.
  std::optional<int8_t> priority;

  friend bool operator==(const ReceivedMessage&, const ReceivedMessage&) = default;
};

// What the connection knows of the TLS layer, for the Received: header (RFC 3848 "ESMTPS").
struct TlsInfo {
  std::string version;  // "TLSv1.3"
  std::string cipher;   // "TLS_AES_256_GCM_SHA384"

  friend bool operator==(const TlsInfo&, const TlsInfo&) = default;
};

// A credential check the session needs before it can answer AUTH (RFC 4954). The glue verifies
// it (salted hash, constant-time) and calls OnAuthResult().
struct AuthRequest {
  std::string mechanism;  // "PLAIN" or "LOGIN"
  std::string authzid;    // PLAIN's authorization identity; empty when not given
  std::string user;
  std::string password;

  friend bool operator==(const AuthRequest&, const AuthRequest&) = default;
};

// What to do with a bare CR or a bare LF in message text (RFC 5321 §2.3.8 forbids them).
enum class BareLfPolicy : uint8_t {
  kReject,     // refuse the message after its end: 550 5.6.0
  kNormalise,  // store each bare LF and each bare CR as CRLF (it still never ends the data)
};

// What to do with a NUL octet in message text. RFC 5322 §3.5 allows none in a message, and a
// next hop that drops NULs would read "\r\n\0.\r\n" as an end of data: SMTP smuggling one hop on.
enum class NulPolicy : uint8_t {
  kReject,  // refuse the message after its end: 550 5.6.0
  kStrip,   // store the message without its NULs (Postfix's message_strip_characters = \0)
};

// Whether the store behind the session can take a message now: the glue says so before it
// feeds input, and MAIL is refused while it cannot (no data is sent for nothing).
enum class Intake : uint8_t {
  kOpen,
  kFull,         // its disk is under the free-space watermark: 452 4.3.1
  kUnavailable,  // it cannot write (an I/O error, a stall): 451 4.3.0
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
    // RFC 3207: offer STARTTLS (the glue has a certificate). Not offered once in TLS.
    bool starttls = false;
    // The connection is TLS from its first byte (port 465 style, RFC 8314).
    bool implicit_tls = false;
    // RFC 4954: offer AUTH PLAIN LOGIN; only under TLS unless auth_plaintext.
    bool auth = false;
    bool auth_plaintext = false;
    // Relay control: this client's address is in the configured relay networks. Otherwise only
    // an authenticated client may relay; recipients in local_domains are accepted from anyone
    // (others: 550 5.7.1). The recipient's domain (after any source route) is compared exactly,
    // lower-cased; an address literal is never local. Without relay rights a recipient with '%',
    // '!' or '@' in its local part is refused (501 5.1.3: no %-hack or bang path).
    bool client_may_relay = false;
    // RFC 3461: offer DSN and take its parameters ([delivery] dsn: the notices are sent);
    // without it, RET, ENVID, NOTIFY and ORCPT get 555 5.5.4.
    bool dsn = true;
    std::vector<std::string> local_domains;  // compared lower-cased
    // Asked for each recipient the relay policy let through, with the sender: a reply it
    // returns ("550 5.1.1 ...": the glue's suppression list) refuses the recipient; "" takes it.
    std::function<std::string(std::string_view mail_from, std::string_view mailbox)> rcpt_check;
    // For the Received: header (RFC 5321 §4.4).
    std::string client_address;  // "192.0.2.1" or "IPv6:2001:db8::1"
    // RFC 5321 §2.3.8: bare CR or LF in message text (DATA or BDAT).
    BareLfPolicy bare_lf = BareLfPolicy::kReject;
    // NUL in message text (DATA or BDAT).
    NulPolicy nul = NulPolicy::kReject;
    // Headers the session adds to each message: Received: first (RFC 5321 §4.4), and Date: and
    // Message-ID: at the end of the header section when missing (RFC 5322 §3.6).
    bool add_received = true;
    bool add_missing_headers = true;
    // Makes Message-IDs unique across sessions (the glue fills in random letters and digits);
    // only letters, digits, '-' and '_' of it are used.
    std::string id_nonce;
  };
  explicit ServerSession(Options options);

  // Queues the 220 greeting. Call once, right after the connection is accepted (or after the
  // greeting delay: input fed before Start() makes it answer 554 5.5.0 and close instead).
  void Start();

  // Consumes `in`. Input after a completed data phase stays buffered until OnCommitted().
  void Feed(std::string_view in);

  // The message whose data phase just completed, once. While one is outstanding the session
  // is paused (awaiting_commit() is true).
  std::optional<ReceivedMessage> TakeMessage();
  bool awaiting_commit() const;

  // The data phase: from the 354 to DATA until its final "." (RFC 5321 §4.1.1.4), or from the
  // first BDAT of a transaction until its LAST chunk is read, between chunks included (RFC 3030
  // §2); a BDAT chunk being read counts whatever its verdict. The glue holds a client to a
  // minimum data rate over it.
  bool in_data() const;

  // The spool's answer for the outstanding message: its queue id once durable (250 2.0.0 Ok:
  // queued as <id>), or an error the client may retry: 452 4.3.1 for one equivalent to
  // std::errc::no_space_on_device, else 451 4.3.0. Resumes buffered input.
  void OnCommitted(Result<std::string> queue_id);

  // The command timeout expired: queues 421 4.4.2 and closes (RFC 5321 §4.5.3.2).
  void OnTimeout();

  // The store's state, for the next MAIL (Intake). Open until said otherwise.
  void SetIntake(Intake intake) { intake_ = intake; }

  // Wall-clock time, for Received:/Date: headers: the glue sets it before Feed() (the session
  // reads no clock itself).
  void SetNow(std::chrono::system_clock::time_point now);

  // STARTTLS (RFC 3207 §4.2): once "220 2.0.0 Ready to start TLS" is queued, tls_requested()
  // is true and everything the client pipelined behind the command has been discarded
  // (CVE-2011-0411). The glue sends the output in the clear, runs the handshake, then calls
  // OnTlsStarted(): the session forgets EHLO and any transaction (§4.2) and no longer offers
  // STARTTLS. If the handshake fails, the glue closes the connection.
  bool tls_requested() const;
  void OnTlsStarted(TlsInfo info);

  // With implicit_tls, OnTlsStarted() may be called before Start(): it only records `info`.

  // AUTH (RFC 4954): when the client has sent its credentials, TakeAuthRequest() yields them
  // once and the session pauses until OnAuthResult(): 235 2.7.0 or 535 5.7.8. Input fed
  // meanwhile is buffered as is: the reactor should stop reading while awaiting_auth().
  // The session's identity is AuthRequest::user: the glue refuses an authzid other than it.
  std::optional<AuthRequest> TakeAuthRequest();
  void OnAuthResult(bool ok);
  bool awaiting_auth() const;

  // Bytes to send. Empty when there is nothing.
  std::string TakeOutput();

  // Whether input fed since the last call carried AUTH credentials (a SASL response). The
  // session wipes its own copies (its input buffer, the decoded strings); the glue wipes the
  // buffer it fed from, e.g. the TLS plaintext.
  bool TakeSecretSeen() { return std::exchange(secret_seen_, false); }

  // True once QUIT was answered or the session gave up (421): send the output, then close.
  bool closed() const;

 private:
  // Commands and the state machine: server_session.cc; the data phase: server_session_data.cc.
  enum class State : uint8_t {
    kStart,      // no EHLO/HELO yet
    kGreeted,    // EHLO/HELO done, no transaction
    kMail,       // MAIL accepted
    kRcpt,       // at least one RCPT accepted
    kChunking,   // BDAT chunks accepted, no LAST yet
    kData,       // after 354: the input is message text
    kCommit,     // data phase ended; paused until OnCommitted()
    kBroken,     // DATA or BDAT refused: MAIL, RCPT, DATA, BDAT wait for RSET (or EHLO/HELO)
    kAuth,       // AUTH sent a 334: the next line is a SASL response
    kAuthCheck,  // credentials complete; paused until OnAuthResult()
  };
  // Where the data-phase scanner stands. Only CRLF starts a line (RFC 5321 §2.3.8, §4.1.1.4).
  enum class Scan : uint8_t {
    kLineStart,  // right after CRLF (or the DATA command)
    kDot,        // a '.' at line start, not yet stored
    kDotCr,      // ".\r" at line start, not yet stored
    kText,       // inside a line
    kCr,         // inside a line, the last octet (already stored) was '\r'
  };

  bool Paused() const;
  bool InTls() const;
  bool AuthOffered() const;
  size_t LineLimit(std::string_view line_start) const;
  void LineTooLong();
  size_t Consume(std::string_view in);
  size_t ScanText(std::string_view in, bool dot_rules);
  size_t ConsumeChunk(std::string_view in);
  void BareLf();
  void BareCr();
  void AppendBody(const char* data, size_t size);
  // A run of text without CR or LF: AppendBody() after the NUL policy.
  void AppendText(const char* data, size_t size);
  // Whole ordinary lines of the body section (text, CRLF; no NUL, none too long), found by
  // ScanText's fast path: AppendBody()'s limits and policy, for many lines at once.
  void AppendLines(const char* data, size_t size);
  // Counts `size` more octets of text against the size limit: whether they are to be stored
  // (false, and the body let go, once the message is to be refused).
  bool Keep(size_t size);
  void StartBody();
  // Room for a body of about `expected` octets and the fields we add, up front: no growing by
  // copies. Capped, as the figure is only a guess (the client's SIZE, or its last message).
  void ReserveBody(uint64_t expected);
  void EndOfData();
  void FinishChunk();
  void HandleCommandLine(std::string_view line);
  void Hello(std::string_view arg, bool extended);
  void Mail(std::string_view arg);
  void Rcpt(std::string_view arg);
  void Data(std::string_view arg);
  void Bdat(std::string_view arg);
  void StartTls(std::string_view arg);
  void Auth(std::string_view arg);
  void AuthResponse(std::string_view line);
  void AuthFail(std::string_view reply);
  void DropAuthRequest();  // wipes its password first
  void ScrubInput();
  void RefuseData(std::string_view reply);
  bool MayRelayTo(const Path& path) const;
  void Say(std::string_view reply);
  void Refuse(std::string_view reply);
  void ResetTransaction();
  void ResumeBuffered();

  Options options_;
  State state_ = State::kStart;
  bool closed_ = false;
  bool started_ = false;
  bool early_input_ = false;    // fed before Start(): a client that does not wait (pregreet)
  bool ehlo_ = false;           // the greeting was EHLO, not HELO
  bool tls_requested_ = false;  // 220 to STARTTLS queued; input dropped until OnTlsStarted()
  bool tls_active_ = false;     // OnTlsStarted() was called
  TlsInfo tls_info_;
  bool authenticated_ = false;
  std::string auth_user_;
  internal::SaslServer sasl_;                // the exchange in progress (kAuth)
  std::optional<AuthRequest> auth_request_;  // complete, not yet taken (kAuthCheck)
  Intake intake_ = Intake::kOpen;
  bool secret_seen_ = false;    // a SASL response was read (TakeSecretSeen())
  std::string auth_candidate_;  // the user of the credentials being checked
  std::chrono::system_clock::time_point now_{};
  uint64_t messages_ = 0;  // messages handed out, for Message-IDs
  // Unconsumed input. Unless paused: the start of a command line, shorter than its limit, with
  // in_off_ == 0. Paused (kCommit, kAuthCheck): everything fed since, from in_off_ on.
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
  size_t last_body_ = 0;  // octets of the last message stored: room for the next (no SIZE)
  bool data_too_big_ = false;
  bool line_too_long_ = false;
  bool bare_newline_ = false;    // a bare CR or LF was seen (BareLfPolicy::kReject)
  bool nul_ = false;             // a NUL was seen (NulPolicy::kReject)
  internal::TraceFields trace_;  // the fields added to the message, written as its text comes
  // BDAT: octets of the current chunk still to read, whether they belong to the transaction
  // (else they are read and dropped, and `chunk_refusal_` answers), and whether it is the LAST.
  uint64_t chunk_left_ = 0;
  uint64_t chunk_size_ = 0;
  bool chunk_last_ = false;
  std::string chunk_refusal_;
};

}  // namespace spate::smtp
