// tests/unit/dot_stuff_test.cc
#include "delivery/dot_stuff.h"

#include <random>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace spate::delivery {
namespace {

std::string Stuffed(std::string_view body) {
  std::string out;
  AppendDotStuffed(out, body);
  return out;
}

// The rule of RFC 5321 §4.5.2, one byte at a time.
std::string Reference(std::string_view body) {
  std::string out;
  bool line_start = true;
  for (char c : body) {
    if (line_start && c == '.') {
      out.push_back('.');
    }
    out.push_back(c);
    line_start = c == '\n';
  }
  if (!body.empty() && !body.ends_with("\r\n")) {
    out += "\r\n";
  }
  return out + ".\r\n";
}

TEST(DotStuffTest, EmptyBodyIsJustTheMarker) {
  EXPECT_EQ(Stuffed(""), ".\r\n");
}

TEST(DotStuffTest, PlainBody) {
  EXPECT_EQ(Stuffed("Hello\r\n"), "Hello\r\n.\r\n");
}

TEST(DotStuffTest, LeadingDot) {
  EXPECT_EQ(Stuffed(".hidden\r\n"), "..hidden\r\n.\r\n");
  EXPECT_EQ(Stuffed("."), "..\r\n.\r\n");
}

TEST(DotStuffTest, DotsAfterLineFeeds) {
  EXPECT_EQ(Stuffed("a\r\n.\r\nb\r\n..c\r\n"), "a\r\n..\r\nb\r\n...c\r\n.\r\n");
  EXPECT_EQ(Stuffed("a\n.b\n"), "a\n..b\n\r\n.\r\n");  // a bare LF starts a line too
}

TEST(DotStuffTest, DotsElsewhereUntouched) {
  EXPECT_EQ(Stuffed("a.b\r\n x.\r\n\r.\r\n"), "a.b\r\n x.\r\n\r.\r\n.\r\n");
}

TEST(DotStuffTest, ConsecutiveDotLines) {
  EXPECT_EQ(Stuffed(".\r\n.\r\n.\r\n"), "..\r\n..\r\n..\r\n.\r\n");
}

TEST(DotStuffTest, BodyWithoutFinalCrlf) {
  EXPECT_EQ(Stuffed("no end"), "no end\r\n.\r\n");
  EXPECT_EQ(Stuffed("a\r\n.b"), "a\r\n..b\r\n.\r\n");
  EXPECT_EQ(Stuffed("ends in cr\r"), "ends in cr\r\r\n.\r\n");
}

TEST(DotStuffTest, BodyEndingInLfDotGetsStuffedAndTerminated) {
  EXPECT_EQ(Stuffed("a\r\n."), "a\r\n..\r\n.\r\n");
}

TEST(DotStuffTest, AppendsAfterExistingOutput) {
  std::string out = "DATA\r\n";
  AppendDotStuffed(out, ".x\r\n");
  EXPECT_EQ(out, "DATA\r\n..x\r\n.\r\n");
}

TEST(DotStuffTest, MatchesReferenceOnRandomBodies) {
  std::mt19937 rng(42);
  const char kAlphabet[] = {'.', '.', '\r', '\n', '\n', 'a', ' '};
  for (int i = 0; i < 2000; ++i) {
    const size_t len = std::uniform_int_distribution<size_t>(0, 40)(rng);
    std::string body;
    for (size_t j = 0; j < len; ++j) {
      body.push_back(kAlphabet[std::uniform_int_distribution<size_t>(0, 6)(rng)]);
    }
    ASSERT_EQ(Stuffed(body), Reference(body)) << "body: " << body;
  }
}

TEST(DotStuffTest, MatchesReferenceOnLongSparseBodies) {
  // Bodies long enough for the vector scan (16 positions a step), with LFs and dots few and
  // anywhere: at the ends of a step, across two, at the very end of the body.
  std::mt19937 rng(7);
  for (int i = 0; i < 3000; ++i) {
    const size_t len = std::uniform_int_distribution<size_t>(0, 300)(rng);
    std::string body(len, 'a');
    const int specials = std::uniform_int_distribution<int>(0, 12)(rng);
    for (int k = 0; k < specials && len > 0; ++k) {
      const size_t at = std::uniform_int_distribution<size_t>(0, len - 1)(rng);
      const int what = std::uniform_int_distribution<int>(0, 3)(rng);
      body[at] = what == 0 ? '.' : what == 1 ? '\n' : what == 2 ? '\r' : '.';
      if (what == 1 && at + 1 < len && k % 2 == 0)
        body[at + 1] = '.';  // an LF-dot pair, often
    }
    ASSERT_EQ(Stuffed(body), Reference(body)) << "body: " << body;
  }
}

TEST(DotStuffTest, LargeBody) {
  std::string body;
  for (int i = 0; i < 10000; ++i) {
    body += i % 3 == 0 ? ".line\r\n" : "line\r\n";
  }
  EXPECT_EQ(Stuffed(body), Reference(body));
}

}  // namespace
}  // namespace spate::delivery
