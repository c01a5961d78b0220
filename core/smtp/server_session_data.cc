// core/smtp/server_session_data.cc
//
// ServerSession's data phase: the message text of DATA and of BDAT chunks, from the first octet
// to the verdict after the final "." or the LAST chunk (see server_session.h for the contract,
// server_session.cc for the commands and the state machine).
//
// Message text is scanned by a small machine (Scan) over five states. In the data phase of DATA
// only a '.' at the start of a line and the CR after it are held back, so that ".\r\n" can end the
// data (RFC 5321 §4.1.1.4) and a leading '.' can be removed (§4.5.2). BDAT chunks go through the
// same scanner without the dot rules (RFC 3030 §2: no transparency, no terminator), so that both
// kinds of message get the same bare CR/LF policy and line limit. Text is copied a run at a time
// (memchr for LF, then CR); only a line start is ever a CRLF away from its predecessor. In the
// body section the usual case, line after line of text ending in CRLF, none starting with a
// dot, is found by one vector scan for CR, LF and NUL and appended as one run (AppendLines): a
// quarter less time per transaction than line at a time (bench/README.md, "Message text").
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/smtp/internal/trace_headers.h"
#include "core/smtp/server_session.h"

namespace spate::smtp {

namespace {

// The offset of the first CR, LF or NUL in [p, p + n), or n. Sixteen octets per step (SSE2 is
// in every x86-64).
size_t FindCrLfNul(const char* p, size_t n) {
  size_t i = 0;
#if defined(__SSE2__)
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  const __m128i nul = _mm_setzero_si128();
  for (; i + 16 <= n; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
                                     _mm_cmpeq_epi8(v, nul));
    const int mask = _mm_movemask_epi8(hit);
    if (mask != 0)
      return i + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
  }
#endif
  for (; i < n; ++i) {
    if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
      return i;
  }
  return n;
}

}  // namespace

// Message text: with `dot_rules` (DATA) up to and including the final ".\r\n", or all of `in`;
// without (a BDAT chunk) all of `in`.
size_t ServerSession::ScanText(std::string_view in, bool dot_rules) {
  size_t i = 0;
  while (i < in.size()) {
    const char c = in[i];
    switch (scan_) {
      case Scan::kLineStart:
        if (dot_rules && c == '.') {
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
          BareCr();
          scan_ = Scan::kText;
        }
        break;
      case Scan::kText: {
        const char* p = in.data() + i;
        const size_t n = in.size() - i;
        if (!trace_.open()) {
          // The fast path (body section): whole lines of text ending in CRLF, each within the
          // line limit, up to the first line that needs the state machine: one starting with a
          // dot (DATA), holding a NUL, a bare CR or LF, one too long, or one not complete in
          // `in`. What it takes is exactly what the path below would, line by line.
          size_t taken = 0;  // octets of the whole lines found
          size_t line = line_len_;
          for (size_t at = 0;;) {
            const size_t k = FindCrLfNul(p + at, n - at);
            if (at + k + 1 >= n || p[at + k] != '\r' || p[at + k + 1] != '\n' ||
                line + k + 2 > options_.max_text_line) {
              break;
            }
            at += k + 2;
            taken = at;
            line = 0;
            if (at == n || (dot_rules && p[at] == '.'))
              break;
          }
          if (taken > 0) {
            AppendLines(p, taken);
            scan_ = Scan::kLineStart;
            i += taken;
            break;
          }
        }
        // A run of text up to the next CR or LF. An LF met here follows no CR: it is bare. It
        // never starts a line (it cannot lead to a terminator: SMTP smuggling), though it does
        // end one for the length limit, as the MTAs downstream will count it.
        const char* lf = static_cast<const char*>(std::memchr(p, '\n', n));
        const size_t to_lf = lf == nullptr ? n : static_cast<size_t>(lf - p);
        const char* cr = static_cast<const char*>(std::memchr(p, '\r', to_lf));
        const size_t run = cr == nullptr ? to_lf : static_cast<size_t>(cr - p);
        if (cr != nullptr && run + 1 < n && cr[1] == '\n') {
          // The usual line: its text and CRLF in one append (the same counts as three).
          AppendText(p, run + 2);
          line_len_ = 0;
          scan_ = Scan::kLineStart;
          i += run + 2;
          break;
        }
        if (run > 0) {
          AppendText(p, run);
        }
        i += run;
        if (run == n) {
          break;
        }
        ++i;
        if (cr != nullptr) {
          AppendBody("\r", 1);
          scan_ = Scan::kCr;
        } else {
          BareLf();
        }
        break;
      }
    }
  }
  return in.size();
}

// BDAT chunk octets (RFC 3030 §2): exactly as many as announced, whatever they hold.
size_t ServerSession::ConsumeChunk(std::string_view in) {
  const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_left_, in.size()));
  if (chunk_refusal_.empty()) {
    ScanText(in.substr(0, n), false);
  }
  chunk_left_ -= n;
  if (chunk_left_ == 0) {
    FinishChunk();
  }
  return n;
}

// RFC 5321 §2.3.8: a client must not send a CR or LF but as CRLF. Either the message is refused
// at its end or the octet is stored as CRLF (Options::bare_lf).
void ServerSession::BareLf() {
  if (options_.bare_lf == BareLfPolicy::kNormalise) {
    AppendBody("\r\n", 2);
  } else {
    bare_newline_ = true;
    AppendBody("\n", 1);
  }
  line_len_ = 0;
}

// The CR is already stored; what followed it was no LF.
void ServerSession::BareCr() {
  if (options_.bare_lf == BareLfPolicy::kNormalise) {
    AppendBody("\n", 1);
    line_len_ = 0;
  } else {
    bare_newline_ = true;
  }
}

// Every octet of text but CR, LF and a line's leading dot comes through here, so this is the one
// place a NUL can be met.
void ServerSession::AppendText(const char* data, size_t size) {
  const char* nul = static_cast<const char*>(std::memchr(data, '\0', size));
  if (nul == nullptr) {
    AppendBody(data, size);
    return;
  }
  if (options_.nul == NulPolicy::kReject) {
    nul_ = true;
    AppendBody(data, size);  // counted for the limits; nothing is stored from now on
    return;
  }
  const char* end = data + size;
  while (nul != nullptr) {
    if (nul > data)
      AppendBody(data, static_cast<size_t>(nul - data));
    data = nul + 1;
    nul = static_cast<const char*>(std::memchr(data, '\0', static_cast<size_t>(end - data)));
  }
  if (data < end)
    AppendBody(data, static_cast<size_t>(end - data));
}

bool ServerSession::Keep(size_t size) {
  data_size_ += size;
  if (options_.max_message_size != 0 && data_size_ > options_.max_message_size) {
    data_too_big_ = true;
  }
  if (data_too_big_ || line_too_long_ || bare_newline_ || nul_) {
    // The message will be refused: keep reading to its end, storing nothing.
    if (txn_.body.capacity() != 0) {
      std::string().swap(txn_.body);
    }
    return false;
  }
  return true;
}

void ServerSession::AppendLines(const char* data, size_t size) {
  line_len_ = 0;  // they end in CRLF, and each was within the limit
  if (Keep(size)) {
    txn_.body.append(data, size);
  }
}

void ServerSession::AppendBody(const char* data, size_t size) {
  line_len_ += size;
  // RFC 5321 §4.5.3.1.6: the limit does not count a stuffing dot, which never reaches here.
  if (line_len_ > options_.max_text_line) {
    line_too_long_ = true;
  }
  if (!Keep(size)) {
    return;
  }
  if (trace_.open()) {
    trace_.Append(&txn_.body, std::string_view(data, size));  // still in the header section
  } else {
    txn_.body.append(data, size);
  }
}

void ServerSession::ReserveBody(uint64_t expected) {
  constexpr uint64_t kMaxReserve = 4 << 20;
  txn_.body.reserve(static_cast<size_t>(std::min(expected, kMaxReserve)) + 512);
}

void ServerSession::StartBody() {
  scan_ = Scan::kLineStart;  // the line after DATA starts a line: "." right away ends the data
  line_len_ = 0;
  data_size_ = 0;
  data_too_big_ = false;
  line_too_long_ = false;
  bare_newline_ = false;
  nul_ = false;
  if (txn_.body.capacity() < last_body_) {
    // No SIZE from the client (RFC 1870 §3 would have reserved at MAIL): a campaign's
    // messages on one connection are alike, so room for the last one's size saves growing the
    // body by copies, about one copy of it (EndOfData gives back what this overshoots).
    ReserveBody(last_body_);
  }
  // The added fields: everything the Received: line says is known by now (RCPT cannot follow
  // DATA or BDAT, RFC 3030 §2; nor can AUTH, STARTTLS or EHLO without ending the transaction),
  // so it goes in before the first octet of text. The message number is the one EndOfData()
  // gives it if it is stored: no other message can come first.
  const internal::ReceivedInfo received{.helo = helo_,
                                        .client_address = options_.client_address,
                                        .hostname = options_.hostname,
                                        .ehlo = ehlo_,
                                        .smtputf8 = txn_.smtputf8,
                                        .tls = InTls(),
                                        .authenticated = authenticated_,
                                        .tls_version = tls_info_.version,
                                        .tls_cipher = tls_info_.cipher,
                                        .recipient = txn_.rcpt_to.size() == 1
                                                         ? std::string_view(txn_.rcpt_to[0])
                                                         : std::string_view()};
  const internal::MessageIdInfo id{
      .hostname = options_.hostname, .nonce = options_.id_nonce, .number = messages_ + 1};
  trace_.Start(&txn_.body, now_, options_.add_received ? &received : nullptr,
               options_.add_missing_headers ? &id : nullptr);
}

// The message is complete (after "." or BDAT LAST): refused, or handed to the spool.
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
  if (bare_newline_) {
    // RFC 5321 §2.3.8. The MTAs downstream may read a bare LF or CR as a line end, so such a
    // message could smuggle a second one past us (SMTP smuggling): refused as a whole.
    Say("550 5.6.0 Error: message contains bare LF or bare CR, not allowed (RFC 5321 2.3.8)");
    ResetTransaction();
    return;
  }
  if (nul_) {
    // RFC 5322 §3.5: no NUL in a message. A next hop that drops it could see an end of data
    // where we saw text (SMTP smuggling one hop later): refused as a whole, like a bare LF.
    Say("550 5.6.0 Error: message contains NUL octets, not allowed (RFC 5322 3.5)");
    ResetTransaction();
    return;
  }
  txn_.helo = helo_;
  if (authenticated_) {
    txn_.auth_user = auth_user_;
  }
  ++messages_;
  trace_.Finish(&txn_.body, now_);
  last_body_ = txn_.body.size();
  if (txn_.body.capacity() > 2 * last_body_ + 4096) {
    // Room reserved for more than came (a client's SIZE, or a larger message before): the
    // body waits in the queue, possibly for days, with no more than it needs.
    txn_.body.shrink_to_fit();
  }
  ready_ = std::move(txn_);
  txn_ = ReceivedMessage{};
  state_ = State::kCommit;
}

// All octets of a BDAT chunk are read: its reply (RFC 3030 §2).
void ServerSession::FinishChunk() {
  if (!chunk_refusal_.empty()) {
    const std::string reply = std::exchange(chunk_refusal_, std::string());
    RefuseData(reply);
    return;
  }
  if (data_too_big_) {
    // Refused at the chunk that went over; the client must not send more (§2), and whatever it
    // pipelined is read and refused in kBroken. Past LAST the transaction is simply over.
    Say("552 5.3.4 Error: message size exceeds fixed maximum message size");
    ResetTransaction();
    if (!chunk_last_) {
      state_ = State::kBroken;
    }
    return;
  }
  if (!chunk_last_) {
    Say("250 2.0.0 " + std::to_string(chunk_size_) + " octets received");
    state_ = State::kChunking;
    return;
  }
  if (scan_ == Scan::kCr) {
    BareCr();  // the message ends in a CR
  }
  EndOfData();
}

}  // namespace spate::smtp
