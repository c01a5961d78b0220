// tests/fuzz/client_session_fuzz.cc
//
// Fuzzes delivery::ClientSession (delivery/client_session.h) against a server scripted by the
// input: the server's bytes come in turns, and between turns (and between the chunks of a turn)
// the harness acts as the delivery glue does: it takes the output and the events, submits a
// fixed envelope whenever the session says ReadyForTransaction, and sends QUIT after the last
// transaction.
//
// Input: [flags] [3 chunk sizes] script (see fuzz_util.h). The script is the server's bytes,
// cut into turns at NUL octets; each turn is fed in chunks. Flags:
//   0x03 number of recipients (0..3)     0x04 null sender
//   0x08 size hint and BODY=8BITMIME     0x10 Abort() once the script is used up
//   0x60 transactions before QUIT, minus one (1..4)
//   0x80 vary the body per transaction (plain, empty, a lone "." without CRLF)
//
// The session asks for STARTTLS whenever the script's EHLO reply offers it; the glue then acts
// as if the handshake had worked at once (OnTlsEstablished()).
//
// Invariants (a violation traps):
//  - each recipient of a transaction gets exactly one RecipientResult, with that transaction's
//    id, before its TransactionDone; a result's code is 200..599;
//  - a 2xx result comes only once the dot-stuffed body and <CRLF>.<CRLF> were written
//    ("success means the conversation worked");
//  - ReadyForTransaction only with no transaction in flight and idle() true; Closed exactly
//    once, with no transaction in flight, and closed() true from then on;
//  - nothing after Closed: no event and no output, whatever the server sends or the glue calls;
//  - the body is borrowed only until TransactionDone (it is freed then; ASan catches a late
//    read);
//  - StartTls comes with no transaction in flight, is the last event of its batch (nothing the
//    server sent behind its 220 is taken: RFC 3207 §6), is followed by no output before the
//    handshake, and then by EHLO (§4.2).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "delivery/client_session.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

constexpr size_t kHeader = 4;
constexpr std::string_view kBodies[3] = {
    "From: a@example.net\r\nSubject: fuzz\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n",
    "",
    ".",
};

// RFC 5321 §4.5.2 written out independently of delivery/dot_stuff.cc.
std::string DotStuffed(std::string_view body) {
  std::string out;
  bool line_start = true;
  for (char c : body) {
    if (line_start && c == '.') {
      out += '.';
    }
    out += c;
    line_start = c == '\n';
  }
  if (!body.empty() && !body.ends_with("\r\n")) {
    out += "\r\n";
  }
  out += ".\r\n";
  return out;
}

class Driver {
 public:
  explicit Driver(uint8_t flags)
      : flags_(flags), session_(delivery::ClientSession::Options{"localhost", /*starttls=*/true}) {
    const size_t rcpts = flags & 0x03;
    const char* const kRcpts[3] = {"a@example.com", "b@example.com", "postmaster@example.org"};
    for (size_t i = 0; i < rcpts; ++i) {
      envelope_.rcpt_to.emplace_back(kRcpts[i]);
    }
    envelope_.mail_from = (flags & 0x04) != 0 ? "" : "bounce@example.net";
    if ((flags & 0x08) != 0) {
      envelope_.size_hint = 123;
      envelope_.body_8bit = true;
    }
    max_transactions_ = 1 + ((flags >> 5) & 0x03);
  }

  void ServerSays(std::string_view bytes) {
    session_.OnBytes(bytes);
    Drain();
  }

  // The script is used up: the connection breaks, or stays open; then the post-mortem checks.
  void Finish() {
    if ((flags_ & 0x10) != 0) {
      session_.Abort("connection reset");
      Drain();
      FUZZ_CHECK(closed_);
    }
    if (!closed_) {
      return;
    }
    FUZZ_CHECK(!in_transaction_);
    session_.OnBytes("250 2.0.0 Ok\r\n");
    session_.OnBytes("421 4.4.2 bye\r\n");
    session_.Quit();
    session_.Abort("again");
    FUZZ_CHECK(session_.TakeOutput().empty());
    FUZZ_CHECK(session_.TakeEvents().empty());
    FUZZ_CHECK(session_.closed());
  }

 private:
  void Drain() {
    for (;;) {
      const std::string out = session_.TakeOutput();
      if (closed_) {
        FUZZ_CHECK(out.empty());
      }
      wire_ += out;
      bool ready = false;
      bool aborted = false;
      bool start_tls = false;
      for (delivery::Event& event : session_.TakeEvents()) {
        FUZZ_CHECK(!closed_);    // nothing after Closed
        FUZZ_CHECK(!start_tls);  // nothing after StartTls
        if (std::holds_alternative<delivery::StartTls>(event)) {
          FUZZ_CHECK(!in_transaction_);
          start_tls = true;
        } else if (auto* r = std::get_if<delivery::RecipientResult>(&event)) {
          OnResult(*r);
        } else if (auto* d = std::get_if<delivery::TransactionDone>(&event)) {
          FUZZ_CHECK(in_transaction_ && d->transaction_id == transaction_id_);
          for (bool g : got_) {
            FUZZ_CHECK(g);
          }
          in_transaction_ = false;
          body_.reset();  // no longer borrowed
        } else if (std::holds_alternative<delivery::ReadyForTransaction>(event)) {
          FUZZ_CHECK(!in_transaction_);
          ready = true;
        } else if (auto* c = std::get_if<delivery::Closed>(&event)) {
          FUZZ_CHECK(!in_transaction_);
          closed_ = true;
          aborted = c->reply.code == 0;
          ready = false;
        }
      }
      if (delivered_ && !aborted) {
        // Delivered: the whole message went out, ended by <CRLF>.<CRLF> (§4.1.1.4). (An
        // Abort() drops output not yet taken: a server that answers before it was sent to.)
        FUZZ_CHECK(wire_.find("DATA\r\n" + stuffed_) != std::string::npos);
      }
      delivered_ = false;
      if (start_tls) {
        // The handshake: nothing goes out in the clear meanwhile; then EHLO inside it.
        session_.OnBytes("250 2.0.0 injected\r\n");
        FUZZ_CHECK(session_.TakeOutput().empty());
        FUZZ_CHECK(session_.TakeEvents().empty());
        session_.OnTlsEstablished();
        FUZZ_CHECK(session_.tls_active());
        const std::string ehlo = session_.TakeOutput();
        FUZZ_CHECK(ehlo.rfind("EHLO ", 0) == 0);
        wire_ += ehlo;
        continue;
      }
      FUZZ_CHECK(session_.closed() == closed_);
      if (session_.idle()) {
        FUZZ_CHECK(!in_transaction_);
      }
      if (!ready) {
        return;
      }
      FUZZ_CHECK(session_.idle());
      if (transactions_ == max_transactions_) {
        session_.Quit();
        continue;
      }
      Submit();
    }
  }

  void Submit() {
    const std::string_view text = (flags_ & 0x80) != 0 ? kBodies[transactions_ % 3] : kBodies[0];
    body_ = std::make_unique<std::string>(text);
    stuffed_ = DotStuffed(text);
    wire_.clear();
    got_.assign(envelope_.rcpt_to.size(), false);
    in_transaction_ = true;
    ++transactions_;
    const uint32_t id = session_.Submit(envelope_, *body_);
    FUZZ_CHECK(id > transaction_id_);
    transaction_id_ = id;
  }

  void OnResult(const delivery::RecipientResult& r) {
    FUZZ_CHECK(in_transaction_ && r.transaction_id == transaction_id_);
    FUZZ_CHECK(r.recipient_index < got_.size());
    FUZZ_CHECK(!got_[r.recipient_index]);  // exactly one result per recipient
    got_[r.recipient_index] = true;
    FUZZ_CHECK(r.reply.code >= 200 && r.reply.code <= 599);
    if (r.reply.positive()) {
      FUZZ_CHECK(r.reply.code / 100 == 2);
      delivered_ = true;  // checked once the batch is read
    }
  }

  const uint8_t flags_;
  delivery::ClientSession session_;
  delivery::Envelope envelope_;
  size_t max_transactions_ = 1;
  size_t transactions_ = 0;
  // The transaction in flight.
  bool in_transaction_ = false;
  uint32_t transaction_id_ = 0;
  std::unique_ptr<std::string> body_;
  std::string stuffed_;     // what the body must look like on the wire
  std::string wire_;        // the client's bytes since the transaction was submitted
  std::vector<bool> got_;   // a result per recipient so far
  bool delivered_ = false;  // a 2xx result in the batch being read
  bool closed_ = false;     // Closed was emitted
};

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < spate::fuzz::kHeader) {
    return 0;
  }
  spate::fuzz::Driver driver(data[0]);
  std::string_view script =
      spate::fuzz::AsView(data + spate::fuzz::kHeader, size - spate::fuzz::kHeader);
  while (!script.empty()) {
    const size_t nul = script.find('\0');
    const std::string_view turn = script.substr(0, nul);
    script.remove_prefix(nul == std::string_view::npos ? script.size() : nul + 1);
    spate::fuzz::Chunker chunks(turn, data + 1);
    std::string_view chunk;
    while (chunks.Next(&chunk)) {
      driver.ServerSays(chunk);
    }
  }
  driver.Finish();
  return 0;
}
