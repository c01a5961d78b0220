// tests/fuzz/reply_parser_fuzz.cc
//
// Fuzzes smtp::ReplyParser (core/smtp/reply_parser.h): the server's bytes fed in chunks, every
// completed reply taken before the next Feed().
//
// Input: [flags] [3 chunk sizes] server bytes (see fuzz_util.h). Flags: 0x01 small limits
// (64-octet lines, 4 lines), so the limit paths are reachable.
//
// Invariants (a violation traps):
//  - Feed() consumes at most what it was given; it stops early only on a complete reply, and
//    consumes nothing while that reply is not taken;
//  - a reply has a code in 200..599, an enhanced code that is empty or "c.s.d" (RFC 3463 §2,
//    subject and detail of 1 to 3 digits) whose class is the code's first digit, and at most
//    max_lines lines of text, each within max_line_bytes once "ddd " is counted;
//  - an error is final: every later Feed() returns it, and TakeReply() has nothing;
//  - the split does not matter: cut as the header says, fed octet by octet and fed whole, the
//    same replies come out, and the input fails in all three ways or in none.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "core/result.h"
#include "core/smtp/errc.h"
#include "core/smtp/reply.h"
#include "core/smtp/reply_parser.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

constexpr size_t kHeader = 4;

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

// 1 to 3 digits at the start of `s`; returns how many, or 0.
size_t Digits(std::string_view s) {
  size_t n = 0;
  while (n < s.size() && IsDigit(s[n])) {
    ++n;
  }
  return n >= 1 && n <= 3 ? n : 0;
}

void CheckReply(const smtp::Reply& reply, const smtp::ReplyParser::Limits& limits) {
  FUZZ_CHECK(reply.code >= 200 && reply.code <= 599);
  FUZZ_CHECK(reply.positive() || reply.transient() || reply.permanent());
  if (!reply.enhanced.empty()) {
    std::string_view e = reply.enhanced;
    FUZZ_CHECK(e.size() >= 5 && e[0] == static_cast<char>('0' + reply.code / 100) && e[1] == '.');
    e.remove_prefix(2);
    const size_t subject = Digits(e);
    FUZZ_CHECK(subject != 0 && subject < e.size() && e[subject] == '.');
    e.remove_prefix(subject + 1);
    FUZZ_CHECK(Digits(e) == e.size());
  }
  size_t lines = 1;
  std::string_view text = reply.text;
  for (;;) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    FUZZ_CHECK(line.empty() || line.size() + 4 <= limits.max_line_bytes);
    if (nl == std::string_view::npos) {
      break;
    }
    text.remove_prefix(nl + 1);
    ++lines;
  }
  FUZZ_CHECK(lines <= limits.max_lines);
  FUZZ_CHECK(!reply.ToString().empty());
}

struct Outcome {
  std::vector<smtp::Reply> replies;
  std::error_code error;
};

bool SameReply(const smtp::Reply& a, const smtp::Reply& b) {
  return a.code == b.code && a.enhanced == b.enhanced && a.text == b.text;
}

// Feeds `in` in the pieces `chunks` yields, taking every reply as it completes.
Outcome Parse(Chunker chunks, const smtp::ReplyParser::Limits& limits) {
  smtp::ReplyParser parser(limits);
  Outcome outcome;
  std::string_view chunk;
  while (chunks.Next(&chunk)) {
    while (!chunk.empty()) {
      Result<size_t> used = parser.Feed(chunk);
      if (!used) {
        outcome.error = used.error();
        FUZZ_CHECK(outcome.error == smtp::Errc::kMalformedReply ||
                   outcome.error == smtp::Errc::kReplyTooLong);
        // Final: the parser is dead from now on.
        Result<size_t> again = parser.Feed("250 ok\r\n");
        FUZZ_CHECK(!again && again.error() == outcome.error);
        FUZZ_CHECK(!parser.TakeReply());
        return outcome;
      }
      FUZZ_CHECK(*used <= chunk.size());
      chunk.remove_prefix(*used);
      std::optional<smtp::Reply> reply;
      if (!chunk.empty()) {
        // It stopped early: only for a complete reply, and it waits until that is taken.
        Result<size_t> again = parser.Feed(chunk);
        FUZZ_CHECK(again && *again == 0);
        reply = parser.TakeReply();
        FUZZ_CHECK(reply.has_value());
      } else {
        reply = parser.TakeReply();
      }
      if (reply) {
        CheckReply(*reply, limits);
        outcome.replies.push_back(std::move(*reply));
        FUZZ_CHECK(!parser.TakeReply());  // taken once
      }
    }
  }
  return outcome;
}

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using spate::fuzz::Chunker;
  if (size < spate::fuzz::kHeader) {
    return 0;
  }
  spate::smtp::ReplyParser::Limits limits;
  if ((data[0] & 0x01) != 0) {
    limits.max_line_bytes = 64;
    limits.max_lines = 4;
  }
  const std::string_view in =
      spate::fuzz::AsView(data + spate::fuzz::kHeader, size - spate::fuzz::kHeader);
  const spate::fuzz::Outcome split = spate::fuzz::Parse(Chunker(in, data + 1), limits);
  static constexpr uint8_t kWhole[3] = {0, 0, 0};
  static constexpr uint8_t kOctets[3] = {1, 1, 1};
  const spate::fuzz::Outcome whole = spate::fuzz::Parse(Chunker(in, kWhole), limits);
  const spate::fuzz::Outcome octets = spate::fuzz::Parse(Chunker(in, kOctets), limits);
  for (const spate::fuzz::Outcome* other : {&whole, &octets}) {
    FUZZ_CHECK(static_cast<bool>(split.error) == static_cast<bool>(other->error));
    FUZZ_CHECK(split.replies.size() == other->replies.size());
    for (size_t i = 0; i < split.replies.size(); ++i) {
      FUZZ_CHECK(spate::fuzz::SameReply(split.replies[i], other->replies[i]));
    }
  }
  return 0;
}
