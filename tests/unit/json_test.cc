// core/json: every string comes back from a real JSON parser (nlohmann-json) as it went in, or,
// where the input is not UTF-8, as valid JSON with U+FFFD for each byte that could not be read.
#include "core/json.h"

#include <cstdint>
#include <limits>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace spate {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

std::string Quoted(std::string_view s) {
  std::string out;
  AppendJsonString(out, s);
  return out;
}

// Parses `text` as a JSON string (strictly: nlohmann rejects invalid UTF-8 and raw controls).
std::string ParsedBack(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_TRUE(j.is_string()) << "not a JSON string: " << text;
  return j.is_string() ? j.get<std::string>() : std::string();
}

TEST(JsonTest, PlainTextEscapesAndControlsRoundTrip) {
  const std::string cases[] = {
      "",
      "250 2.0.0 Ok: queued as 4F2a",
      "quote \" backslash \\ slash /",
      "line\nbreak\r\ttab\bback\fform",
      std::string("nul \0 inside", 12),
      "\x01\x02\x1f \x7f end",
  };
  for (const std::string& s : cases)
    EXPECT_EQ(ParsedBack(Quoted(s)), s) << Quoted(s);
}

TEST(JsonTest, EscapesAreTheShortFormsAndNoRawControlIsLeft) {
  EXPECT_EQ(Quoted("a\"b\\c\n\r\t\b\f"), R"("a\"b\\c\n\r\t\b\f")");
  EXPECT_EQ(Quoted(std::string("\x00\x01\x1f\x7f", 4)), R"("\u0000\u0001\u001f\u007f")");
  const std::string all = [] {
    std::string s;
    for (int c = 0; c < 0x80; ++c)
      s.push_back(static_cast<char>(c));
    return s;
  }();
  const std::string out = Quoted(all);
  for (char c : out)
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "raw byte " << static_cast<int>(c);
  EXPECT_EQ(ParsedBack(out), all);
}

TEST(JsonTest, WellFormedUtf8PassesThroughUnchanged) {
  const std::string cases[] = {
      "caf\xC3\xA9",                // U+00E9
      "\xC2\x80 \xDF\xBF",          // U+0080, U+07FF: the two-byte ends
      "\xE0\xA0\x80 \xED\x9F\xBF",  // U+0800, U+D7FF
      "\xEE\x80\x80 \xEF\xBF\xBF",  // U+E000, U+FFFF
      "\xF0\x90\x80\x80",           // U+10000
      "\xF4\x8F\xBF\xBF",           // U+10FFFF, the last
      "\xE2\x82\xAC \xF0\x9F\x93\xA7 \xE6\x97\xA5\xE6\x9C\xAC",  // euro, e-mail, nihon
  };
  for (const std::string& s : cases) {
    EXPECT_EQ(Quoted(s), "\"" + s + "\"");
    EXPECT_EQ(ParsedBack(Quoted(s)), s);
  }
}

TEST(JsonTest, EachByteOfAnIllFormedSequenceBecomesOneReplacementCharacter) {
  struct Case {
    std::string in, want;
  } cases[] = {
      {"\x80", kFffd},                                      // lone continuation
      {"a\xFFz", "a" + kFffd + "z"},                        // never in UTF-8
      {"\xC0\xAF", kFffd + kFffd},                          // overlong '/'
      {"\xC1\xBF", kFffd + kFffd},                          // overlong
      {"\xE0\x80\xAF", kFffd + kFffd + kFffd},              // overlong, three bytes
      {"\xF0\x80\x80\xAF", kFffd + kFffd + kFffd + kFffd},  // overlong, four bytes
      {"\xED\xA0\x80", kFffd + kFffd + kFffd},              // surrogate U+D800
      {"\xED\xBF\xBF", kFffd + kFffd + kFffd},              // surrogate U+DFFF
      {"\xF4\x90\x80\x80", kFffd + kFffd + kFffd + kFffd},  // U+110000
      {"\xF5\x80\x80\x80", kFffd + kFffd + kFffd + kFffd},  // past the range
      {"\xE2\x82", kFffd + kFffd},                          // truncated at the end
      {"\xE2\x82z", kFffd + kFffd + "z"},                   // truncated inside
      {"\xC3\xC3\xA9", kFffd + "\xC3\xA9"},                 // a bad byte, then a good sequence
  };
  for (const Case& c : cases) {
    const std::string out = Quoted(c.in);
    EXPECT_EQ(ParsedBack(out), c.want) << out;
  }
}

// Hostile input: random bytes, always valid JSON, and what was valid UTF-8 in it comes back.
TEST(JsonTest, RandomBytesAlwaysMakeValidJson) {
  std::mt19937 rng(12345);
  for (int round = 0; round < 2000; ++round) {
    std::string s(rng() % 64, '\0');
    for (char& c : s)
      c = static_cast<char>(rng());
    const std::string out = Quoted(s);
    ASSERT_FALSE(nlohmann::json::parse(out, nullptr, false).is_discarded()) << out;
    EXPECT_EQ(out.find('\n'), std::string::npos);
  }
}

TEST(JsonTest, NumbersAreParsedBackExactly) {
  std::string out = "[";
  AppendJsonNumber(out, int64_t{0});
  out += ",";
  AppendJsonNumber(out, std::numeric_limits<int64_t>::min());
  out += ",";
  AppendJsonNumber(out, std::numeric_limits<uint64_t>::max());
  out += "]";
  nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j[0].get<int64_t>(), 0);
  EXPECT_EQ(j[1].get<int64_t>(), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(j[2].get<uint64_t>(), std::numeric_limits<uint64_t>::max());
}

}  // namespace
}  // namespace spate
