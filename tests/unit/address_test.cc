// tests/unit/address_test.cc: the RFC 5321 §4.1.2 path parser.
#include "core/smtp/address.h"

#include <ostream>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "core/smtp/errc.h"

namespace spate::smtp {
namespace {

struct ValidCase {
  std::string input;
  PathKind kind;
  std::string mailbox;
  std::string local_part;
  std::string domain;
};

void PrintTo(const ValidCase& c, std::ostream* os) {
  *os << testing::PrintToString(c.input);
}

class ValidPathTest : public testing::TestWithParam<ValidCase> {};

TEST_P(ValidPathTest, Parses) {
  const ValidCase& c = GetParam();
  Result<Path> path = ParsePath(c.input, c.kind);
  ASSERT_TRUE(path) << c.input << ": " << path.error().message();
  EXPECT_EQ(path->mailbox, c.mailbox);
  EXPECT_EQ(path->local_part, c.local_part);
  EXPECT_EQ(path->domain, c.domain);
  EXPECT_EQ(path->null(), c.mailbox.empty());
}

const std::string kLocal64(64, 'a');
const std::string kLabel63(63, 'b');
// 63+1+63+1+63+1+60 = 252 octets of domain: "<a@" + it + ">" is a path of exactly 256 octets.
const std::string kDomain252 =
    kLabel63 + "." + kLabel63 + "." + kLabel63 + "." + std::string(60, 'c');

INSTANTIATE_TEST_SUITE_P(
    All, ValidPathTest,
    testing::Values(
        ValidCase{"<user@example.com>", PathKind::kForward, "user@example.com", "user",
                  "example.com"},
        ValidCase{"<User.Name+tag@Example.COM>", PathKind::kReverse, "User.Name+tag@Example.COM",
                  "User.Name+tag", "example.com"},
        ValidCase{"<>", PathKind::kReverse, "", "", ""},
        ValidCase{"<!#$%&'*+-/=?^_`{|}~@x.y>", PathKind::kForward, "!#$%&'*+-/=?^_`{|}~@x.y",
                  "!#$%&'*+-/=?^_`{|}~", "x.y"},
        // Source routes are accepted and dropped (§4.1.1.3, Appendix C).
        ValidCase{"<@relay.example:user@example.com>", PathKind::kForward, "user@example.com",
                  "user", "example.com"},
        ValidCase{"<@a.example,@b.example:user@example.com>", PathKind::kReverse,
                  "user@example.com", "user", "example.com"},
        // Quoted local parts keep their quoting.
        ValidCase{"<\"a b\"@example.com>", PathKind::kForward, "\"a b\"@example.com", "\"a b\"",
                  "example.com"},
        ValidCase{"<\"a\\\"b\\\\c@d\"@example.com>", PathKind::kForward,
                  "\"a\\\"b\\\\c@d\"@example.com", "\"a\\\"b\\\\c@d\"", "example.com"},
        ValidCase{"<\"a>b\"@example.com>", PathKind::kForward, "\"a>b\"@example.com", "\"a>b\"",
                  "example.com"},
        ValidCase{"<\"\"@example.com>", PathKind::kForward, "\"\"@example.com", "\"\"",
                  "example.com"},
        // Address literals (§4.1.3).
        ValidCase{"<u@[192.0.2.1]>", PathKind::kForward, "u@[192.0.2.1]", "u", "[192.0.2.1]"},
        ValidCase{"<u@[0.0.0.255]>", PathKind::kForward, "u@[0.0.0.255]", "u", "[0.0.0.255]"},
        ValidCase{"<u@[IPv6:2001:db8::1]>", PathKind::kForward, "u@[IPv6:2001:db8::1]", "u",
                  "[ipv6:2001:db8::1]"},
        ValidCase{"<u@[ipv6:1:2:3:4:5:6:7:8]>", PathKind::kForward, "u@[ipv6:1:2:3:4:5:6:7:8]", "u",
                  "[ipv6:1:2:3:4:5:6:7:8]"},
        ValidCase{"<u@[IPv6:::]>", PathKind::kForward, "u@[IPv6:::]", "u", "[ipv6:::]"},
        ValidCase{"<u@[IPv6:::ffff:192.0.2.1]>", PathKind::kForward, "u@[IPv6:::ffff:192.0.2.1]",
                  "u", "[ipv6:::ffff:192.0.2.1]"},
        ValidCase{"<u@[IPv6:1:2:3:4:5:6:192.0.2.1]>", PathKind::kForward,
                  "u@[IPv6:1:2:3:4:5:6:192.0.2.1]", "u", "[ipv6:1:2:3:4:5:6:192.0.2.1]"},
        // Postmaster without a domain, for RCPT only (§4.1.1.3).
        ValidCase{"<postmaster>", PathKind::kForward, "postmaster", "postmaster", ""},
        ValidCase{"<PostMaster>", PathKind::kForward, "PostMaster", "PostMaster", ""},
        // Limits: exactly at them.
        ValidCase{"<" + kLocal64 + "@x.y>", PathKind::kForward, kLocal64 + "@x.y", kLocal64, "x.y"},
        ValidCase{"<a@" + kLabel63 + ".com>", PathKind::kForward, "a@" + kLabel63 + ".com", "a",
                  kLabel63 + ".com"},
        ValidCase{"<a@" + kDomain252 + ">", PathKind::kForward, "a@" + kDomain252, "a", kDomain252},
        ValidCase{"<a-b@x-1.9y>", PathKind::kForward, "a-b@x-1.9y", "a-b", "x-1.9y"}));

struct InvalidCase {
  std::string input;
  PathKind kind;
  Errc error;
};

void PrintTo(const InvalidCase& c, std::ostream* os) {
  *os << testing::PrintToString(c.input);
}

class InvalidPathTest : public testing::TestWithParam<InvalidCase> {};

TEST_P(InvalidPathTest, Refused) {
  const InvalidCase& c = GetParam();
  Result<Path> path = ParsePath(c.input, c.kind);
  ASSERT_FALSE(path) << c.input << " parsed as " << path->mailbox;
  EXPECT_EQ(path.error(), make_error_code(c.error)) << c.input << ": " << path.error().message();
}

INSTANTIATE_TEST_SUITE_P(
    All, InvalidPathTest,
    testing::Values(
        InvalidCase{"", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"user@example.com", PathKind::kForward, Errc::kBadAddress},  // no brackets
        InvalidCase{"<user@example.com", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<user@example.com> ", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<>", PathKind::kForward, Errc::kBadAddress},  // null only for MAIL
        InvalidCase{"<postmaster>", PathKind::kReverse, Errc::kBadAddress},
        InvalidCase{"<user>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<user@>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<@example.com>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<a..b@example.com>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<.a@example.com>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<a.@example.com>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<a b@example.com>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<a@b@example.com>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<a@example.com.>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<a@-example.com>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<a@example-.com>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<a@exa_mple.com>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<a@" + std::string(64, 'b') + ".com>", PathKind::kForward,
                    Errc::kBadAddress},  // label over 63 octets
        InvalidCase{"<\"unterminated@example.com>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<\"a\tb\"@example.com>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<a\"b\"@example.com>", PathKind::kForward, Errc::kBadAddress},
        // Source routes must be well formed even though they are dropped.
        InvalidCase{"<@a.example:>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<@a.example,b.example:u@x.y>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<@:u@x.y>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<@a.example u@x.y>", PathKind::kForward, Errc::kBadAddress},
        // Address literals.
        InvalidCase{"<u@[256.0.0.1]>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<u@[1.2.3]>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<u@[1.2.3.4.5]>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<u@[1.2.3.0001]>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<u@[IPv6:1:2:3:4:5:6:7]>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<u@[IPv6:1:2:3:4:5:6:7:8:9]>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<u@[IPv6:1::2::3]>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<u@[IPv6:1:2:3:4:5:6:7::]>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<u@[IPv6:12345::1]>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<u@[IPv6:g::1]>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<u@[IPv6:1.2.3.4::]>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<u@[IPv6:2001:db8::1]x>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<u@[x-tag:foo]>", PathKind::kForward, Errc::kBadAddress},
        InvalidCase{"<u@[192.0.2.1>", PathKind::kForward, Errc::kBadAddress},
        // Limits of §4.5.3.1.1-3.
        InvalidCase{"<" + std::string(65, 'a') + "@x.y>", PathKind::kForward,
                    Errc::kAddressTooLong},
        InvalidCase{"<a@" + kDomain252 + "ab.c>", PathKind::kForward,
                    Errc::kAddressTooLong},  // 256-octet domain
        InvalidCase{"<ab@" + kDomain252 + ">", PathKind::kForward,
                    Errc::kAddressTooLong},  // a 257-octet path
        InvalidCase{"<" + kLocal64 + "@" + kDomain252 + ">", PathKind::kForward,
                    Errc::kAddressTooLong},  // each part fits, the path does not
        // 8-bit octets, until SMTPUTF8.
        InvalidCase{"<j\xc3\xb6rg@example.com>", PathKind::kForward, Errc::kAddressNotAscii},
        InvalidCase{"<jorg@b\xc3\xbc\x63her.example>", PathKind::kReverse, Errc::kAddressNotAscii},
        InvalidCase{"<\"j\xc3\xb6rg\"@example.com>", PathKind::kForward, Errc::kAddressNotAscii}));

// SMTPUTF8 (RFC 6531 §3.3): well-formed UTF-8 in the local part (atoms and quoted strings) and
// in domain labels; malformed UTF-8 is bad syntax; address literals stay ASCII.
struct Utf8Case {
  std::string input;
  bool valid;
  std::string domain = {};  // when valid
};

void PrintTo(const Utf8Case& c, std::ostream* os) {
  *os << testing::PrintToString(c.input);
}

class Utf8PathTest : public testing::TestWithParam<Utf8Case> {};

TEST_P(Utf8PathTest, ParsesWithSmtpUtf8) {
  const Utf8Case& c = GetParam();
  Result<Path> path = ParsePath(c.input, PathKind::kForward, /*smtputf8=*/true);
  if (!c.valid) {
    ASSERT_FALSE(path) << c.input << " parsed as " << path->mailbox;
    EXPECT_EQ(path.error(), make_error_code(Errc::kBadAddress));
    return;
  }
  ASSERT_TRUE(path) << c.input << ": " << path.error().message();
  EXPECT_EQ("<" + path->mailbox + ">", c.input);
  EXPECT_EQ(path->domain, c.domain);
  // Without SMTPUTF8 the same path is refused as non-ASCII (or was ASCII all along).
  Result<Path> ascii = ParsePath(c.input, PathKind::kForward);
  if (HasNonAscii(c.input)) {
    ASSERT_FALSE(ascii);
    EXPECT_EQ(ascii.error(), make_error_code(Errc::kAddressNotAscii));
  } else {
    EXPECT_TRUE(ascii);
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, Utf8PathTest,
    testing::Values(
        Utf8Case{"<j\xc3\xb6rg@example.com>", true, "example.com"},
        Utf8Case{"<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac\xe5\x8f\xb8>",
                 true, "\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac\xe5\x8f\xb8"},
        Utf8Case{"<a@B\xc3\x9c"
                 "CHER.example>",
                 true,
                 "b\xc3\x9c"
                 "cher.example"},  // ASCII lowered
        Utf8Case{"<\xf0\x9f\x93\xa7.x@x-\xc3\xa9.y>", true, "x-\xc3\xa9.y"},
        Utf8Case{"<\"\xe2\x82\xac q\"@x.y>", true, "x.y"},
        Utf8Case{"<\xef\xbf\xbf@x.y>", true, "x.y"},                          // U+FFFF
        Utf8Case{"<\xf4\x8f\xbf\xbf@x.y>", true, "x.y"},                      // U+10FFFF
        Utf8Case{"<plain@x.y>", true, "x.y"}, Utf8Case{"<\xc3@x.y>", false},  // truncated
        Utf8Case{"<\xc3\xc3\xa9@x.y>", false},                            // lead byte without tail
        Utf8Case{"<\x80@x.y>", false},                                    // lone continuation
        Utf8Case{"<\xc0\xaf@x.y>", false},                                // overlong "/"
        Utf8Case{"<\xe0\x80\xaf@x.y>", false},                            // overlong, 3 octets
        Utf8Case{"<\xf0\x80\x80\xaf@x.y>", false},                        // overlong, 4 octets
        Utf8Case{"<\xed\xa0\x80@x.y>", false},                            // surrogate U+D800
        Utf8Case{"<\xf4\x90\x80\x80@x.y>", false},                        // U+110000
        Utf8Case{"<\xff@x.y>", false}, Utf8Case{"<a@\xc3\xa9->", false},  // label ends in a hyphen
        Utf8Case{"<a@-\xc3\xa9>", false},                                 // label starts with one
        Utf8Case{"<a@[IPv6:\xc3\xa9::1]>", false},                        // literals stay ASCII
        Utf8Case{"<\"\\\xc3\xa9\"@x.y>", false},                          // quoted-pair stays ASCII
        Utf8Case{"<a@x.y\xc2\xa0>", true,
                 "x.y\xc2\xa0"}));  // not IDNA-valid, but syntax checks UTF-8 only

TEST(HasNonAsciiTest, LooksForHighOctets) {
  EXPECT_FALSE(HasNonAscii(""));
  EXPECT_FALSE(HasNonAscii("plain@x.y\x7f"));
  EXPECT_TRUE(HasNonAscii("j\xc3\xb6rg"));
  EXPECT_TRUE(HasNonAscii("\x80"));
}

TEST(ParsePathPrefixTest, StopsAfterTheClosingBracket) {
  size_t consumed = 0;
  Result<Path> path =
      ParsePathPrefix("<\"a> b\"@example.com> SIZE=10", PathKind::kReverse, &consumed);
  ASSERT_TRUE(path);
  EXPECT_EQ(path->mailbox, "\"a> b\"@example.com");
  EXPECT_EQ(consumed, std::string_view("<\"a> b\"@example.com>").size());

  path = ParsePathPrefix("<> BODY=8BITMIME", PathKind::kReverse, &consumed);
  ASSERT_TRUE(path);
  EXPECT_TRUE(path->null());
  EXPECT_EQ(consumed, 2u);

  path = ParsePathPrefix("<postmaster> X=1", PathKind::kForward, &consumed);
  ASSERT_TRUE(path);
  EXPECT_EQ(path->mailbox, "postmaster");
  EXPECT_EQ(consumed, 12u);
}

TEST(DomainOfTest, FollowsTheLastAt) {
  EXPECT_EQ(DomainOf("user@example.com"), "example.com");
  EXPECT_EQ(DomainOf("\"a@b\"@Example.COM"), "Example.COM");
  EXPECT_EQ(DomainOf("postmaster"), "");
  EXPECT_EQ(DomainOf(""), "");
  EXPECT_EQ(DomainOf("u@[192.0.2.1]"), "[192.0.2.1]");
}

TEST(ErrcTest, CategoryNamesTheErrors) {
  const std::error_code ec = Errc::kAddressTooLong;
  EXPECT_STREQ(ec.category().name(), "spate.smtp");
  EXPECT_EQ(ec.message(), "address too long");
  EXPECT_NE(std::error_code(Errc::kBadAddress).message(),
            std::error_code(Errc::kAddressNotAscii).message());
}

}  // namespace
}  // namespace spate::smtp
