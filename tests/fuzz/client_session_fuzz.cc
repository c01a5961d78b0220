// tests/fuzz/client_session_fuzz.cc
//
// Fuzzes delivery::ClientSession (delivery/client_session.h) against a server scripted by the
// input: the server's bytes come in turns, and between turns (and between the chunks of a turn)
// the harness acts as the delivery glue does: it takes the output and the events, submits a
// fixed envelope whenever the session says ReadyForTransaction (and, with pipeline_next, behind
// the end of data whenever it says ReadyForNext), and sends QUIT after the last transaction.
//
// Input: [flags] [3 chunk sizes] script (see fuzz_util.h). The script is the server's bytes,
// cut into turns at NUL octets; each turn is fed in chunks. Flags:
//   0x03 number of recipients (0..3)     0x04 null sender
//   0x08 size hint and BODY=8BITMIME     0x10 Abort() once the script is used up
//   0x60 transactions before QUIT, minus one (1..4)
//   0x80 vary the body per transaction (plain, empty, a lone "." without CRLF)
// The first chunk-size octet's 0x80 bit turns on Options::pipeline_next; that chunk size is its
// low 7 bits (0..127). (Inputs written before the bit had a meaning, with a first size under
// 128, read as they did.)
//
// The session asks for STARTTLS whenever the script's EHLO reply offers it; the glue then acts
// as if the handshake had worked at once (OnTlsEstablished()).
//
// Invariants (a violation traps):
//  - each recipient of a transaction gets exactly one RecipientResult, with that transaction's
//    id, before its TransactionDone; a result's code is 200..599. With pipeline_next up to two
//    transactions are in flight, and results and TransactionDone belong to either; but the
//    older's TransactionDone comes before any result of the newer, unless the newer is settled
//    at once by its Submit() (refused before sending: its results, its TransactionDone and
//    ReadyForNext or ReadyForTransaction, and no output);
//  - a 2xx result comes only once that transaction's dot-stuffed body and <CRLF>.<CRLF> were
//    written behind its DATA, before the next transaction's commands ("success means the
//    conversation worked");
//  - ReadyForTransaction only with no transaction in flight and idle() true; Closed exactly
//    once, with no transaction in flight, and closed() true from then on;
//  - ReadyForNext only with pipeline_next, exactly one transaction in flight (idle() false),
//    not closed, and never once pipeline_next_refused() (which is sticky, and true only after a
//    transaction went behind an end of data); can_submit_next() is true exactly from a
//    ReadyForNext until the next Submit(), TransactionDone, ReadyForTransaction or Closed, so
//    never with two transactions in flight; the one in flight no longer borrows its body then;
//    a transaction sent behind the end of data starts with MAIL (no RSET) and is a whole group
//    ending in DATA;
//  - nothing after Closed: no event and no output, whatever the server sends or the glue calls;
//  - each body is owned by the harness until its transaction's TransactionDone and freed then
//    (ASan catches a late read); body_borrowed() is true right after a Submit() that did not
//    settle at once, and false once TransactionDone came;
//  - StartTls comes with no transaction in flight, is the last event of its batch (nothing the
//    server sent behind its 220 is taken: RFC 3207 §6), is followed by no output before the
//    handshake, and then by EHLO (§4.2).
#include <cstddef>
#include <cstdint>
#include <deque>
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
constexpr uint8_t kPipelineNextBit = 0x80;  // in the first chunk-size octet
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

delivery::ClientSession::Options SessionOptions(bool pipeline_next) {
  delivery::ClientSession::Options options;
  options.helo_name = "localhost";
  options.starttls = true;
  options.pipeline_next = pipeline_next;
  return options;
}

class Driver {
 public:
  Driver(uint8_t flags, bool pipeline_next)
      : flags_(flags), pipeline_next_(pipeline_next), session_(SessionOptions(pipeline_next)) {
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
    FUZZ_CHECK(in_flight_.empty());
    session_.OnBytes("250 2.0.0 Ok\r\n");
    session_.OnBytes("421 4.4.2 bye\r\n");
    session_.Quit();
    session_.Abort("again");
    FUZZ_CHECK(session_.TakeOutput().empty());
    FUZZ_CHECK(session_.TakeEvents().empty());
    FUZZ_CHECK(session_.closed());
    FUZZ_CHECK(!session_.can_submit_next());
    for (uint32_t id = 1; id <= last_id_; ++id) {
      FUZZ_CHECK(!session_.body_borrowed(id));
    }
  }

 private:
  // A transaction in flight, as the glue keeps it.
  struct Tx {
    uint32_t id = 0;
    std::unique_ptr<std::string> body;    // owned until TransactionDone
    std::string stuffed;                  // what the body must look like on the wire
    std::vector<bool> got;                // a result per recipient so far
    size_t wire_begin = 0;                // where its commands start in wire_
    size_t wire_end = std::string::npos;  // where the next one's commands start
  };
  // A 2xx result of the batch being read, checked once the batch is read.
  struct Delivered {
    std::string needle;  // "DATA\r\n" and the stuffed body
    size_t begin = 0;
    size_t end = std::string::npos;
  };

  // The transaction `id` in flight, or null.
  Tx* Find(uint32_t id, size_t* index) {
    for (size_t i = 0; i < in_flight_.size(); ++i) {
      if (in_flight_[i].id == id) {
        *index = i;
        return &in_flight_[i];
      }
    }
    return nullptr;
  }

  void Drain() {
    for (;;) {
      const std::string out = session_.TakeOutput();
      if (closed_) {
        FUZZ_CHECK(out.empty());
      }
      const std::vector<delivery::Event> events = session_.TakeEvents();
      // The batch a Submit() produced: settled at once (events, no output), or sent (output,
      // no events).
      const uint32_t settling = submitted_;
      if (submitted_ != 0) {
        CheckSubmitBatch(out, events);
        submitted_ = 0;
      }
      wire_ += out;
      bool ready = false;
      bool aborted = false;
      bool start_tls = false;
      bool next_pending = false;  // a ReadyForNext no later event of the batch overtook
      delivered_.clear();
      done_.clear();
      for (const delivery::Event& event : events) {
        FUZZ_CHECK(!closed_);    // nothing after Closed
        FUZZ_CHECK(!start_tls);  // nothing after StartTls
        if (std::holds_alternative<delivery::StartTls>(event)) {
          FUZZ_CHECK(in_flight_.empty());
          start_tls = true;
        } else if (auto* r = std::get_if<delivery::RecipientResult>(&event)) {
          OnResult(*r, settling);
        } else if (auto* d = std::get_if<delivery::TransactionDone>(&event)) {
          size_t index = 0;
          Tx* tx = Find(d->transaction_id, &index);
          FUZZ_CHECK(tx != nullptr);
          // The older finishes first, unless the newer was settled by its Submit().
          FUZZ_CHECK(index == 0 || d->transaction_id == settling);
          for (bool g : tx->got) {
            FUZZ_CHECK(g);
          }
          done_.push_back(tx->id);
          // No longer borrowed: freed now.
          in_flight_.erase(in_flight_.begin() + static_cast<std::ptrdiff_t>(index));
          next_pending = false;
          next_offered_ = false;
        } else if (std::holds_alternative<delivery::ReadyForTransaction>(event)) {
          FUZZ_CHECK(in_flight_.empty());
          ready = true;
          next_pending = false;
          next_offered_ = false;
        } else if (std::holds_alternative<delivery::ReadyForNext>(event)) {
          FUZZ_CHECK(pipeline_next_);
          FUZZ_CHECK(in_flight_.size() == 1);  // the one whose end of data went out
          FUZZ_CHECK(!refused_);               // sampled before the call of this batch
          next_pending = true;
          next_offered_ = true;
        } else if (auto* c = std::get_if<delivery::Closed>(&event)) {
          FUZZ_CHECK(in_flight_.empty());
          closed_ = true;
          aborted = c->reply.code == 0;
          ready = false;
          next_pending = false;
          next_offered_ = false;
        }
      }
      if (!aborted) {
        // Delivered: the whole message went out behind its DATA, ended by <CRLF>.<CRLF>
        // (§4.1.1.4), before the commands of the transaction behind it. (An Abort() drops
        // output not yet taken: a server that answers before it was sent to.)
        for (const Delivered& d : delivered_) {
          const size_t at = wire_.find(d.needle, d.begin);
          FUZZ_CHECK(at != std::string::npos);
          FUZZ_CHECK(d.end == std::string::npos || at + d.needle.size() <= d.end);
        }
      }
      for (uint32_t id : done_) {
        FUZZ_CHECK(!session_.body_borrowed(id));
      }
      // pipeline_next_refused(): sticky, only after a transaction went behind data.
      const bool refused = session_.pipeline_next_refused();
      FUZZ_CHECK(refused || !refused_);
      FUZZ_CHECK(!refused || went_behind_);
      refused_ = refused;
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
      FUZZ_CHECK(in_flight_.size() <= 2);
      if (session_.idle()) {
        FUZZ_CHECK(in_flight_.empty());
      }
      // Submitting behind is possible exactly while a ReadyForNext stands.
      FUZZ_CHECK(session_.can_submit_next() == next_offered_);
      if (next_offered_) {
        FUZZ_CHECK(!refused);
        FUZZ_CHECK(!session_.idle() && !closed_);
        FUZZ_CHECK(in_flight_.size() == 1);
        FUZZ_CHECK(!session_.body_borrowed(in_flight_.front().id));  // in the output
      }
      if (ready) {
        FUZZ_CHECK(session_.idle());
        if (transactions_ == max_transactions_) {
          session_.Quit();
          continue;
        }
        Submit();
        continue;
      }
      if (next_pending && transactions_ < max_transactions_) {
        Submit();
        continue;
      }
      return;
    }
  }

  void Submit() {
    const bool behind = session_.can_submit_next();
    FUZZ_CHECK(behind || session_.idle());
    const std::string_view text = (flags_ & 0x80) != 0 ? kBodies[transactions_ % 3] : kBodies[0];
    if (!behind) {
      wire_.clear();  // nothing in flight: the client's bytes from here on
    } else {
      FUZZ_CHECK(in_flight_.size() == 1);
      in_flight_.front().wire_end = wire_.size();
      went_behind_ = true;
    }
    Tx& tx = in_flight_.emplace_back();
    tx.body = std::make_unique<std::string>(text);
    tx.stuffed = DotStuffed(text);
    tx.got.assign(envelope_.rcpt_to.size(), false);
    tx.wire_begin = wire_.size();
    ++transactions_;
    next_offered_ = false;
    submitted_behind_ = behind;
    const uint32_t id = session_.Submit(envelope_, *tx.body);
    FUZZ_CHECK(id > last_id_);
    tx.id = id;
    last_id_ = id;
    submitted_ = id;
    FUZZ_CHECK(in_flight_.size() <= 2);
  }

  // The batch right after Submit(submitted_): no output and the transaction settled, or output
  // and no event.
  void CheckSubmitBatch(const std::string& out, const std::vector<delivery::Event>& events) {
    if (events.empty()) {
      FUZZ_CHECK(!out.empty());
      FUZZ_CHECK(session_.body_borrowed(submitted_));
      if (submitted_behind_) {
        // RFC 2920 §3.1: the whole group behind the end of data, no RSET (§4.1.1.4).
        FUZZ_CHECK(out.rfind("MAIL FROM:<", 0) == 0);
        FUZZ_CHECK(out.ends_with("DATA\r\n"));
      } else {
        FUZZ_CHECK(out.rfind("MAIL FROM:<", 0) == 0 || out.rfind("RSET\r\n", 0) == 0);
      }
      return;
    }
    FUZZ_CHECK(out.empty());
    FUZZ_CHECK(!session_.body_borrowed(submitted_));
    FUZZ_CHECK(events.size() >= 2);
    for (size_t i = 0; i + 2 < events.size(); ++i) {
      const auto* r = std::get_if<delivery::RecipientResult>(&events[i]);
      FUZZ_CHECK(r != nullptr && r->transaction_id == submitted_);
    }
    const auto* d = std::get_if<delivery::TransactionDone>(&events[events.size() - 2]);
    FUZZ_CHECK(d != nullptr && d->transaction_id == submitted_);
    if (submitted_behind_) {
      FUZZ_CHECK(std::holds_alternative<delivery::ReadyForNext>(events.back()));
    } else {
      FUZZ_CHECK(std::holds_alternative<delivery::ReadyForTransaction>(events.back()));
    }
  }

  void OnResult(const delivery::RecipientResult& r, uint32_t settling) {
    size_t index = 0;
    Tx* tx = Find(r.transaction_id, &index);
    FUZZ_CHECK(tx != nullptr);
    // Replies come in order: the newer has no result before the older's TransactionDone,
    // unless its Submit() settled it before a byte was sent.
    FUZZ_CHECK(index == 0 || r.transaction_id == settling);
    FUZZ_CHECK(r.recipient_index < tx->got.size());
    FUZZ_CHECK(!tx->got[r.recipient_index]);  // exactly one result per recipient
    tx->got[r.recipient_index] = true;
    FUZZ_CHECK(r.reply.code >= 200 && r.reply.code <= 599);
    if (r.reply.positive()) {
      FUZZ_CHECK(r.reply.code / 100 == 2);
      delivered_.push_back(Delivered{"DATA\r\n" + tx->stuffed, tx->wire_begin, tx->wire_end});
    }
  }

  const uint8_t flags_;
  const bool pipeline_next_;
  delivery::ClientSession session_;
  delivery::Envelope envelope_;
  size_t max_transactions_ = 1;
  size_t transactions_ = 0;
  uint32_t last_id_ = 0;
  // The transactions in flight, oldest first (at most two). Declared after session_, so that
  // the bodies go first.
  std::deque<Tx> in_flight_;
  std::string wire_;        // the client's bytes since the oldest in flight was submitted
  uint32_t submitted_ = 0;  // the transaction whose Submit() made the batch to read next
  bool submitted_behind_ = false;
  bool next_offered_ = false;         // a ReadyForNext stands: can_submit_next()
  bool went_behind_ = false;          // a transaction was submitted behind an end of data
  bool refused_ = false;              // pipeline_next_refused() after the last batch
  bool closed_ = false;               // Closed was emitted
  std::vector<Delivered> delivered_;  // 2xx results in the batch being read
  std::vector<uint32_t> done_;        // TransactionDone in the batch being read
};

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < spate::fuzz::kHeader) {
    return 0;
  }
  const bool pipeline_next = (data[1] & spate::fuzz::kPipelineNextBit) != 0;
  const uint8_t sizes[3] = {static_cast<uint8_t>(data[1] & ~spate::fuzz::kPipelineNextBit), data[2],
                            data[3]};
  spate::fuzz::Driver driver(data[0], pipeline_next);
  std::string_view script =
      spate::fuzz::AsView(data + spate::fuzz::kHeader, size - spate::fuzz::kHeader);
  while (!script.empty()) {
    const size_t nul = script.find('\0');
    const std::string_view turn = script.substr(0, nul);
    script.remove_prefix(nul == std::string_view::npos ? script.size() : nul + 1);
    spate::fuzz::Chunker chunks(turn, sizes);
    std::string_view chunk;
    while (chunks.Next(&chunk)) {
      driver.ServerSays(chunk);
    }
  }
  driver.Finish();
  return 0;
}
