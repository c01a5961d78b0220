// tests/unit/reply_parser_test.cc
//
// ReplyParser: every case is fed whole, byte by byte and in seeded random splits, and must
// yield the same replies (or the same error) every time.
#include "core/smtp/reply_parser.h"

#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "core/smtp/errc.h"

namespace spate::smtp {
namespace {

// How a byte stream is cut into Feed() calls.
struct Split {
  std::string name;
  int seed = 0;  // 0: whole; -1: byte by byte; >0: random chunks of 1..16 bytes
};

const std::vector<Split>& Splits() {
  static const std::vector<Split> kSplits = {{"Whole", 0},   {"Bytewise", -1}, {"Random1", 1},
                                             {"Random2", 2}, {"Random3", 3},   {"Random4", 4},
                                             {"Random5", 5}};
  return kSplits;
}

std::vector<std::string_view> Cut(std::string_view in, int seed) {
  std::vector<std::string_view> pieces;
  std::mt19937 rng(static_cast<uint32_t>(seed));
  while (!in.empty()) {
    size_t n = in.size();
    if (seed < 0) {
      n = 1;
    } else if (seed > 0) {
      n = std::uniform_int_distribution<size_t>(1, std::min<size_t>(16, in.size()))(rng);
    }
    pieces.push_back(in.substr(0, n));
    in.remove_prefix(n);
  }
  return pieces;
}

std::string Render(const Reply& r) {
  std::string s = std::to_string(r.code) + "|" + r.enhanced + "|";
  for (char c : r.text) {
    s += c == '\n' ? std::string("\\n") : std::string(1, c);
  }
  return s;
}

struct Outcome {
  std::vector<std::string> replies;  // Render()ed
  std::error_code error;
  size_t consumed = 0;  // bytes consumed in total
};

Outcome ParseAll(std::string_view stream, int seed, ReplyParser::Limits limits = {}) {
  ReplyParser parser(limits);
  Outcome out;
  for (std::string_view piece : Cut(stream, seed)) {
    while (true) {
      Result<size_t> used = parser.Feed(piece);
      if (!used) {
        out.error = used.error();
        return out;
      }
      EXPECT_LE(*used, piece.size());
      out.consumed += *used;
      piece.remove_prefix(*used);
      std::optional<Reply> reply = parser.TakeReply();
      if (reply) {
        out.replies.push_back(Render(*reply));
      } else {
        EXPECT_TRUE(piece.empty()) << "Feed() stopped early without a reply";
        break;
      }
    }
  }
  return out;
}

struct Case {
  std::string name;
  std::string stream;
  std::vector<std::string> replies;  // expected, Render()ed
  std::error_code error;             // expected final error, if any
  ReplyParser::Limits limits{};
};

std::vector<Case> Cases() {
  ReplyParser::Limits tiny;
  tiny.max_line_bytes = 10;
  tiny.max_lines = 3;
  return {
      {"SingleLine", "250 OK\r\n", {"250||OK"}, {}},
      {"CodeOnly", "250\r\n", {"250||"}, {}},
      {"CodeAndSpace", "354 \r\n", {"354||"}, {}},
      {"MultiLine",
       "250-mx.example.com Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
       {"250||mx.example.com Hello\\nPIPELINING\\nSIZE 1000\\n8BITMIME"},
       {}},
      {"EmptyContinuation", "250-\r\n250 last\r\n", {"250||\\nlast"}, {}},
      {"Enhanced",
       "550 5.1.1 <bob@example.com>: no such user\r\n",
       {"550|5.1.1|<bob@example.com>: no such user"},
       {}},
      {"EnhancedAlone", "250 2.0.0\r\n", {"250|2.0.0|"}, {}},
      {"EnhancedThreeDigitParts", "452 4.123.456 later\r\n", {"452|4.123.456|later"}, {}},
      {"EnhancedMultiLine",
       "550-5.7.1 Policy\r\n550-5.7.1 says\r\n550 5.7.1 no\r\n",
       {"550|5.7.1|Policy\\nsays\\nno"},
       {}},
      {"EnhancedMissingOnLaterLine", "250-2.0.0 a\r\n250 b\r\n", {"250|2.0.0|a\\nb"}, {}},
      {"EnhancedClassMismatchIsText", "250 5.1.1 odd\r\n", {"250||5.1.1 odd"}, {}},
      {"EnhancedFourDigitsIsText", "250 2.0.0000 x\r\n", {"250||2.0.0000 x"}, {}},
      {"EnhancedNoSpaceIsText", "250 2.0.0x\r\n", {"250||2.0.0x"}, {}},
      {"EnhancedIncompleteIsText", "250 2.0 ok\r\n", {"250||2.0 ok"}, {}},
      {"NotEnhancedOnLaterLinesWhenFirstHasNone",
       "250-mx\r\n250 2.0.0 x\r\n",
       {"250||mx\\n2.0.0 x"},
       {}},
      {"BareLf", "250-a\n250 b\n", {"250||a\\nb"}, {}},
      {"MixedLineEnds", "250-a\r\n250 b\n", {"250||a\\nb"}, {}},
      {"CrInsideTextKept", "250 a\rb\r\n", {"250||a\rb"}, {}},
      {"Pipelined",
       "250 2.1.0 Ok\r\n550 5.1.1 No\r\n354 go ahead\r\n",
       {"250|2.1.0|Ok", "550|5.1.1|No", "354||go ahead"},
       {}},
      {"PartialTailIsKept", "250 Ok\r\n221 By", {"250||Ok"}, {}},
      {"MismatchedCodes", "250-a\r\n251 b\r\n", {}, Errc::kMalformedReply},
      {"NotDigits", "2x0 a\r\n", {}, Errc::kMalformedReply},
      {"ShortLine", "25\r\n", {}, Errc::kMalformedReply},
      {"EmptyLine", "\r\n", {}, Errc::kMalformedReply},
      {"BadSeparator", "250_ok\r\n", {}, Errc::kMalformedReply},
      {"FirstDigitOne", "150 hm\r\n", {}, Errc::kMalformedReply},
      {"FirstDigitSix", "650 hm\r\n", {}, Errc::kMalformedReply},
      {"ErrorAfterGoodReply", "250 ok\r\nhello\r\n", {"250||ok"}, Errc::kMalformedReply},
      {"LineAtLimit", "250 678901\r\n", {"250||678901"}, {}, tiny},
      {"LineTooLong", "250 6789012\r\n", {}, Errc::kReplyTooLong, tiny},
      {"LineTooLongWithoutEnd", "250 6789012345", {}, Errc::kReplyTooLong, tiny},
      {"LinesAtLimit", "250-a\r\n250-b\r\n250 c\r\n", {"250||a\\nb\\nc"}, {}, tiny},
      {"TooManyLines", "250-a\r\n250-b\r\n250-c\r\n250 d\r\n", {}, Errc::kReplyTooLong, tiny},
  };
}

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}
void PrintTo(const Split& s, std::ostream* os) {
  *os << s.name;
}

class ReplyParserSplitTest : public ::testing::TestWithParam<std::tuple<Case, Split>> {};

TEST_P(ReplyParserSplitTest, SameResultInEverySplit) {
  const auto& [c, split] = GetParam();
  const Outcome got = ParseAll(c.stream, split.seed, c.limits);
  EXPECT_EQ(got.replies, c.replies);
  EXPECT_EQ(got.error, c.error) << got.error.message();
  if (!c.error) {
    EXPECT_EQ(got.consumed, c.stream.size());
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, ReplyParserSplitTest,
                         ::testing::Combine(::testing::ValuesIn(Cases()),
                                            ::testing::ValuesIn(Splits())),
                         [](const ::testing::TestParamInfo<std::tuple<Case, Split>>& param_info) {
                           return std::get<0>(param_info.param).name + "_" +
                                  std::get<1>(param_info.param).name;
                         });

TEST(ReplyParserTest, StopsAfterOneReplyAndConsumesNothingUntilTaken) {
  ReplyParser parser;
  const std::string_view in = "250 a\r\n251 b\r\n";
  Result<size_t> used = parser.Feed(in);
  ASSERT_TRUE(used);
  EXPECT_EQ(*used, 7u);
  Result<size_t> again = parser.Feed(in.substr(7));
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, 0u);  // the first reply has not been taken
  ASSERT_TRUE(parser.TakeReply());
  EXPECT_FALSE(parser.TakeReply());
  used = parser.Feed(in.substr(7));
  ASSERT_TRUE(used);
  EXPECT_EQ(*used, 7u);
  std::optional<Reply> reply = parser.TakeReply();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->code, 251);
  EXPECT_EQ(reply->text, "b");
}

TEST(ReplyParserTest, SplitBetweenCrAndLf) {
  ReplyParser parser;
  ASSERT_TRUE(parser.Feed("250 ok\r"));
  EXPECT_FALSE(parser.TakeReply());
  Result<size_t> used = parser.Feed("\n");
  ASSERT_TRUE(used);
  EXPECT_EQ(*used, 1u);
  std::optional<Reply> reply = parser.TakeReply();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->text, "ok");  // the CR is not part of the text
}

TEST(ReplyParserTest, ErrorsAreFinal) {
  ReplyParser parser;
  Result<size_t> used = parser.Feed("xyz\r\n");
  ASSERT_FALSE(used);
  EXPECT_EQ(used.error(), Errc::kMalformedReply);
  Result<size_t> again = parser.Feed("250 ok\r\n");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), Errc::kMalformedReply);
  EXPECT_FALSE(parser.TakeReply());
}

TEST(ReplyParserTest, DefaultLimitsAcceptLongServerLines) {
  ReplyParser parser;
  const std::string line = "250 " + std::string(4000, 'x') + "\r\n";
  Result<size_t> used = parser.Feed(line);
  ASSERT_TRUE(used);
  EXPECT_EQ(*used, line.size());
  std::optional<Reply> reply = parser.TakeReply();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->text.size(), 4000u);
}

}  // namespace
}  // namespace spate::smtp
