// tests/fuzz/redis_reply_fuzz.cc
//
// Fuzzes redis::ReplyReader (core/redis/reply.h): the bytes a Redis server sends back, which a
// compromised or wrong server may make anything.
//
// Input: 3 chunk sizes (fuzz_util.h), then the bytes.
//
// Invariants (a violation traps):
//  - nothing is read past the input (ASan);
//  - an error is final: nothing is read after it, and it has a reason;
//  - the same replies (and the same verdict) whether the bytes come whole or in chunks;
//  - FormatCommand of a reply's strings is a RESP array the reader reads back as bulk strings.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/redis/reply.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using spate::redis::Reply;
using spate::redis::ReplyReader;

bool Same(const Reply& a, const Reply& b) {
  if (a.type != b.type || a.integer != b.integer || a.str != b.str ||
      a.elements.size() != b.elements.size())
    return false;
  for (size_t i = 0; i < a.elements.size(); ++i) {
    if (!Same(a.elements[i], b.elements[i]))
      return false;
  }
  return true;
}

// Every reply of `in`, fed in pieces of the cycling `sizes`; false when the reader refused it.
bool ReadAll(std::string_view in, const uint8_t sizes[3], std::vector<Reply>* out) {
  ReplyReader reader;
  spate::fuzz::Chunker chunker(in, sizes);
  std::string_view chunk;
  while (chunker.Next(&chunk)) {
    if (!reader.Feed(chunk)) {
      FUZZ_CHECK(!reader.error().empty());
      return false;
    }
    while (auto r = reader.Next())
      out->push_back(std::move(*r));
    if (!reader.error().empty()) {
      FUZZ_CHECK(!reader.Feed("+OK\r\n") && !reader.Next().has_value());
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3)
    return 0;
  const std::string_view in = spate::fuzz::AsView(data + 3, size - 3);
  static constexpr uint8_t kWhole[3] = {0, 0, 0};
  std::vector<Reply> cut, whole;
  const bool cut_ok = ReadAll(in, data, &cut);
  const bool whole_ok = ReadAll(in, kWhole, &whole);
  FUZZ_CHECK(cut_ok == whole_ok);
  FUZZ_CHECK(cut.size() == whole.size());
  for (size_t i = 0; i < cut.size(); ++i)
    FUZZ_CHECK(Same(cut[i], whole[i]));
  // A command of the first reply's strings reads back as an array of those strings.
  if (!whole.empty() && whole[0].type == Reply::Type::kString) {
    const std::vector<std::string> args = {"SET", whole[0].str};
    ReplyReader back;
    FUZZ_CHECK(back.Feed(spate::redis::FormatCommand(args)));
    auto r = back.Next();
    FUZZ_CHECK(r.has_value() && r->type == Reply::Type::kArray && r->elements.size() == 2 &&
               r->elements[1].str == whole[0].str);
  }
  return 0;
}
