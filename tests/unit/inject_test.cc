// tests/unit/inject_test.cc: HTTP injection requests -> messages (core/inject/inject.h).
//
// Bodies are written with nlohmann::ordered_json (so header order is the test's), and the
// messages are read back as a mail reader would: header fields unfolded, RFC 2047 encoded-words
// and quoted-printable decoded by small decoders here, multipart/alternative split at its
// boundary. Every refusal is checked for its status and the JSON path it names.
#include "core/inject/inject.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace spate::inject {
namespace {

using Body = nlohmann::ordered_json;

constexpr int64_t kNowMs = 1704164645000;  // Tue, 02 Jan 2024 03:04:05 +0000
constexpr const char* kDate = "Tue, 02 Jan 2024 03:04:05 +0000";

Context TestContext() {
  Context c;
  c.hostname = "mta.example";
  c.now_ms = kNowMs;
  c.message_id_base = "req42";
  return c;
}

Request BuildOk(const std::string& json, const Limits& limits = {}) {
  Request r;
  Error e;
  const bool ok = Build(json, limits, TestContext(), &r, &e);
  EXPECT_TRUE(ok) << e.status << " " << e.field << ": " << e.text << "\n" << json;
  return r;
}

Error BuildError(const std::string& json, const Limits& limits = {}) {
  Request r;
  Error e;
  EXPECT_FALSE(Build(json, limits, TestContext(), &r, &e)) << json;
  return e;
}

// A minimal valid builder request; tests change what they look at.
Body Simple() {
  return Body{{"envelope_sender", "bounces@example.com"},
              {"content", {{"from", "news@example.com"}, {"text_body", "Hello"}}},
              {"recipients", Body::array({{{"email", "a@dest.test"}}})}};
}

// ---- Reading a message back -------------------------------------------------------------------

struct Parsed {
  std::vector<std::pair<std::string, std::string>> fields;  // unfolded, value without the ": "
  std::string body;
  std::vector<std::string> raw_header_lines;
};

Parsed Parse(const std::string& m) {
  Parsed p;
  const size_t end = m.find("\r\n\r\n");
  const std::string head = end == std::string::npos ? m : m.substr(0, end + 2);
  p.body = end == std::string::npos ? "" : m.substr(end + 4);
  size_t pos = 0;
  while (pos < head.size()) {
    const size_t crlf = head.find("\r\n", pos);
    const std::string line = head.substr(pos, crlf - pos);
    pos = crlf + 2;
    p.raw_header_lines.push_back(line);
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      p.fields.back().second += line;  // unfolding: the CRLF goes, the blank stays
      continue;
    }
    const size_t colon = line.find(':');
    std::string value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') {
      value.erase(0, 1);
    }
    p.fields.emplace_back(line.substr(0, colon), value);
  }
  return p;
}

std::vector<std::string> Names(const Parsed& p) {
  std::vector<std::string> names;
  for (const auto& f : p.fields) {
    names.push_back(f.first);
  }
  return names;
}

std::string Field(const Parsed& p, std::string_view name) {
  for (const auto& f : p.fields) {
    if (f.first.size() == name.size() &&
        std::equal(name.begin(), name.end(), f.first.begin(),
                   [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
      return f.second;
    }
  }
  ADD_FAILURE() << "no " << name << " field";
  return "";
}

std::string Base64Decode(std::string_view in) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+') {
      v = 62;
    } else if (c == '/') {
      v = 63;
    } else if (c == '=') {
      break;
    } else {
      ADD_FAILURE() << "bad base64 " << in;
      return out;
    }
    acc = acc << 6 | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return out;
}

// RFC 2047 decoding of an unfolded value: each =?utf-8?B?...?= decoded, the blanks between two
// adjacent encoded-words dropped (§6.2). Checks every word is at most 75 octets (§2).
std::string DecodeWords(const std::string& value) {
  static const std::regex kWord(R"(=\?utf-8\?B\?([A-Za-z0-9+/=]*)\?=)");
  std::string out;
  auto it = std::sregex_iterator(value.begin(), value.end(), kWord);
  size_t last = 0;
  bool prev_word = false;
  for (; it != std::sregex_iterator(); ++it) {
    const std::smatch& m = *it;
    EXPECT_LE(m.length(0), 75) << m.str(0);
    std::string between = value.substr(last, static_cast<size_t>(m.position(0)) - last);
    const bool blank = between.find_first_not_of(" \t") == std::string::npos;
    if (!(prev_word && blank)) {
      out += between;
    }
    out += Base64Decode(m.str(1));
    last = static_cast<size_t>(m.position(0) + m.length(0));
    prev_word = true;
  }
  out += value.substr(last);
  return out;
}

int Hex(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// Quoted-printable decoding (RFC 2045 §6.7), strict: checks each encoded line is at most 76
// octets, ends in no blank, and that '=' starts =XX (upper-case hex) or a soft line break.
std::string DecodeQp(const std::string& qp) {
  std::string out;
  size_t pos = 0;
  while (pos < qp.size()) {
    size_t crlf = qp.find("\r\n", pos);
    const bool last = crlf == std::string::npos;
    const std::string line = qp.substr(pos, last ? std::string::npos : crlf - pos);
    pos = last ? qp.size() : crlf + 2;
    EXPECT_LE(line.size(), 76u) << line;
    EXPECT_TRUE(line.empty() || (line.back() != ' ' && line.back() != '\t')) << line;
    EXPECT_EQ(line.find_first_of("\r\n"), std::string::npos) << line;
    bool soft = false;
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] != '=') {
        EXPECT_TRUE(line[i] == ' ' || line[i] == '\t' || (line[i] >= 33 && line[i] <= 126));
        out += line[i];
        continue;
      }
      if (i + 1 == line.size()) {
        soft = true;
        break;
      }
      const int hi = i + 1 < line.size() ? Hex(line[i + 1]) : -1;
      const int lo = i + 2 < line.size() ? Hex(line[i + 2]) : -1;
      EXPECT_TRUE(hi >= 0 && lo >= 0) << line;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (!soft && !last) {
      out += "\r\n";
    }
  }
  return out;
}

// The parts of a multipart body with that boundary (RFC 2046 §5.1.1), each parsed.
std::vector<Parsed> Parts(const std::string& body, const std::string& boundary) {
  std::vector<Parsed> parts;
  const std::string delimiter = "\r\n--" + boundary;
  std::string b = "\r\n" + body;  // the first delimiter has the CRLF before it too
  size_t pos = b.find(delimiter);
  EXPECT_NE(pos, std::string::npos);
  while (pos != std::string::npos) {
    size_t after = pos + delimiter.size();
    if (b.compare(after, 2, "--") == 0) {
      EXPECT_EQ(b.substr(after + 2), "\r\n");  // the close delimiter ends the message
      return parts;
    }
    EXPECT_EQ(b.compare(after, 2, "\r\n"), 0);
    after += 2;
    const size_t next = b.find(delimiter, after);
    EXPECT_NE(next, std::string::npos);
    parts.push_back(Parse(b.substr(after, next - after)));
    pos = next;
  }
  return parts;
}

bool HasBareLfOrCr(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) {
      return true;
    }
    if (s[i] == '\r' && (i + 1 == s.size() || s[i + 1] != '\n')) {
      return true;
    }
  }
  return false;
}

size_t LongestLine(const std::string& s) {
  size_t longest = 0;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t crlf = s.find("\r\n", pos);
    if (crlf == std::string::npos) {
      crlf = s.size();
    }
    longest = std::max(longest, crlf - pos);
    pos = crlf + 2;
  }
  return longest;
}

// What every message must be, whatever the request.
void CheckShape(const Message& m) {
  EXPECT_GE(m.data.size(), 2u);
  EXPECT_EQ(m.data.substr(m.data.size() - 2), "\r\n");
  EXPECT_FALSE(HasBareLfOrCr(m.data));
  EXPECT_LE(LongestLine(m.data), 998u);
}

// ---- Whole messages ---------------------------------------------------------------------------

TEST(InjectWhole, RendersEachRecipientAndAddsDateAndMessageId) {
  Body b = {
      {"envelope_sender", "bounces@example.com"},
      {"content",
       "Subject: hi {{ name }}\nFrom: a@example.com\n\nHello {{ name }}, "
       "code {{code}}\nBye"},
      {"recipients",
       Body::array(
           {{{"email", "ann@dest.test"}, {"name", "Ann"}, {"substitutions", {{"code", "111"}}}},
            {{"email", "bob@dest.test"}, {"name", "Bob"}, {"substitutions", {{"code", "222"}}}}})}};
  const Request r = BuildOk(b.dump());
  EXPECT_EQ(r.envelope_sender, "bounces@example.com");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].recipient, "ann@dest.test");
  EXPECT_EQ(r.messages[1].recipient, "bob@dest.test");
  EXPECT_EQ(r.messages[0].data, std::string("Date: ") + kDate +
                                    "\r\nMessage-ID: <req42.0@mta.example>\r\n"
                                    "Subject: hi Ann\r\nFrom: a@example.com\r\n\r\n"
                                    "Hello Ann, code 111\r\nBye\r\n");
  EXPECT_EQ(r.messages[1].data, std::string("Date: ") + kDate +
                                    "\r\nMessage-ID: <req42.1@mta.example>\r\n"
                                    "Subject: hi Bob\r\nFrom: a@example.com\r\n\r\n"
                                    "Hello Bob, code 222\r\nBye\r\n");
  for (const Message& m : r.messages) {
    CheckShape(m);
    EXPECT_FALSE(m.body_8bit);
    EXPECT_FALSE(m.smtputf8);
  }
}

TEST(InjectWhole, KeepsItsOwnDateAndMessageId) {
  Body b = Simple();
  b["content"] =
      "date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMESSAGE-id: <mine@x.test>\r\n"
      "Subject: s\r\n\r\nbody\r\n";
  const Request r = BuildOk(b.dump());
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].data, b["content"].get<std::string>());

  // Only the header section counts: a Date: line in the body does not.
  b["content"] = "Subject: s\r\n\r\nDate: in the body\r\nMessage-ID: also\r\n";
  const Parsed p = Parse(BuildOk(b.dump()).messages[0].data);
  EXPECT_EQ(Names(p), (std::vector<std::string>{"Date", "Message-ID", "Subject"}));
  EXPECT_EQ(Field(p, "Date"), kDate);

  // Only one of the two present: the other is added.
  b["content"] = "Subject: s\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\nbody";
  const Parsed q = Parse(BuildOk(b.dump()).messages[0].data);
  EXPECT_EQ(Names(q), (std::vector<std::string>{"Message-ID", "Subject", "Date"}));
  EXPECT_EQ(Field(q, "Message-ID"), "<req42.0@mta.example>");
}

TEST(InjectWhole, NormalizesLineEndings) {
  Body b = Simple();
  b["content"] = "Subject: a\nX-A: b\rX-B: c\r\n\nline1\nline2\rline3\r\n\n";
  const Request r = BuildOk(b.dump());
  EXPECT_EQ(r.messages[0].data, std::string("Date: ") + kDate +
                                    "\r\nMessage-ID: <req42.0@mta.example>\r\n"
                                    "Subject: a\r\nX-A: b\r\nX-B: c\r\n\r\n"
                                    "line1\r\nline2\r\nline3\r\n\r\n");
  CheckShape(r.messages[0]);
}

TEST(InjectWhole, WithoutAnEmptyLineItIsAllHeaders) {
  Body b = Simple();
  b["content"] = "Subject: only headers\n folded on";
  const Request r = BuildOk(b.dump());
  EXPECT_EQ(r.messages[0].data, std::string("Date: ") + kDate +
                                    "\r\nMessage-ID: <req42.0@mta.example>\r\n"
                                    "Subject: only headers\r\n folded on\r\n");
  // And a message with an empty header section gets the two fields as its header.
  b["content"] = "\nJust a body";
  EXPECT_EQ(BuildOk(b.dump()).messages[0].data,
            std::string("Date: ") + kDate +
                "\r\nMessage-ID: <req42.0@mta.example>\r\n\r\nJust a body\r\n");
}

TEST(InjectWhole, EightBitBodyIsFlagged) {
  Body b = Simple();
  b["content"] = "Subject: s\r\n\r\nGrüße\r\n";
  const Request r = BuildOk(b.dump());
  EXPECT_TRUE(r.messages[0].body_8bit);
  EXPECT_FALSE(r.messages[0].smtputf8);
}

// ---- The builder ------------------------------------------------------------------------------

TEST(InjectBuilder, TextOnly) {
  Body b = Simple();
  b["content"] = {{"from", {{"email", "news@example.com"}, {"name", "News"}}},
                  {"reply_to", {{"email", "help@example.com"}, {"name", "Help"}}},
                  {"subject", "Hello {{ name }}"},
                  {"text_body", "Hi {{ name }}, your code is {{ code }}"},
                  {"headers",
                   {{"X-Zeta", "last-sorted {{code}}"},
                    {"List-Unsubscribe", "<mailto:u@example.com>"},
                    {"X-Alpha", "first-sorted"}}}};
  b["recipients"] = Body::array(
      {{{"email", "a@dest.test"}, {"name", "Ann"}, {"substitutions", {{"code", "123"}}}}});
  const Request r = BuildOk(b.dump());
  ASSERT_EQ(r.messages.size(), 1u);
  CheckShape(r.messages[0]);
  const Parsed p = Parse(r.messages[0].data);
  EXPECT_EQ(Names(p),
            (std::vector<std::string>{"From", "Reply-To", "To", "Subject", "Date", "Message-ID",
                                      "MIME-Version", "X-Zeta", "List-Unsubscribe", "X-Alpha",
                                      "Content-Type", "Content-Transfer-Encoding"}));
  EXPECT_EQ(Field(p, "From"), "News <news@example.com>");
  EXPECT_EQ(Field(p, "Reply-To"), "Help <help@example.com>");
  EXPECT_EQ(Field(p, "To"), "Ann <a@dest.test>");
  EXPECT_EQ(Field(p, "Subject"), "Hello Ann");
  EXPECT_EQ(Field(p, "Date"), kDate);
  EXPECT_EQ(Field(p, "Message-ID"), "<req42.0@mta.example>");
  EXPECT_EQ(Field(p, "MIME-Version"), "1.0");
  EXPECT_EQ(Field(p, "X-Zeta"), "last-sorted 123");
  EXPECT_EQ(Field(p, "List-Unsubscribe"), "<mailto:u@example.com>");
  EXPECT_EQ(Field(p, "Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(Field(p, "Content-Transfer-Encoding"), "quoted-printable");
  EXPECT_EQ(DecodeQp(p.body), "Hi Ann, your code is 123\r\n");
  EXPECT_FALSE(r.messages[0].body_8bit);
}

TEST(InjectBuilder, RecipientWithoutNameIsABareAddress) {
  const Parsed p = Parse(BuildOk(Simple().dump()).messages[0].data);
  EXPECT_EQ(Field(p, "From"), "news@example.com");
  EXPECT_EQ(Field(p, "To"), "a@dest.test");
  EXPECT_EQ(Names(p), (std::vector<std::string>{"From", "To", "Date", "Message-ID", "MIME-Version",
                                                "Content-Type", "Content-Transfer-Encoding"}));
}

TEST(InjectBuilder, HtmlOnly) {
  Body b = Simple();
  b["content"] = {{"from", "news@example.com"}, {"html_body", "<p>Hi {{ email }}</p>"}};
  const Request r = BuildOk(b.dump());
  CheckShape(r.messages[0]);
  const Parsed p = Parse(r.messages[0].data);
  EXPECT_EQ(Field(p, "Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(Field(p, "Content-Transfer-Encoding"), "quoted-printable");
  EXPECT_EQ(DecodeQp(p.body), "<p>Hi a@dest.test</p>\r\n");
}

TEST(InjectBuilder, BothMakeMultipartAlternative) {
  Body b = Simple();
  b["content"] = {{"from", "news@example.com"},
                  {"text_body", "Hi {{name}}\nsecond line"},
                  {"html_body", "<p>Hi {{name}}</p>\n<p>=_spate_alt_0 --=_x</p>"}};
  b["recipients"][0]["name"] = "Ann";
  const Request r = BuildOk(b.dump());
  CheckShape(r.messages[0]);
  const Parsed p = Parse(r.messages[0].data);
  static const std::regex kType(R"re(multipart/alternative; boundary="([^"]+)")re");
  std::smatch m;
  const std::string type = Field(p, "Content-Type");
  ASSERT_TRUE(std::regex_match(type, m, kType)) << type;
  const std::string boundary = m.str(1);
  EXPECT_LE(boundary.size(), 70u);  // RFC 2046 §5.1.1
  const std::vector<Parsed> parts = Parts(p.body, boundary);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(Field(parts[0], "Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(Field(parts[0], "Content-Transfer-Encoding"), "quoted-printable");
  EXPECT_EQ(DecodeQp(parts[0].body), "Hi Ann\r\nsecond line");
  EXPECT_EQ(Field(parts[1], "Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(DecodeQp(parts[1].body), "<p>Hi Ann</p>\r\n<p>=_spate_alt_0 --=_x</p>");
  // The boundary occurs nowhere but in its delimiter lines.
  size_t count = 0;
  for (size_t pos = p.body.find(boundary); pos != std::string::npos;
       pos = p.body.find(boundary, pos + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 3u);
}

TEST(InjectBuilder, HtmlEscapingOnlyInHtmlBody) {
  Body b = Simple();
  b["content"] = {{"from", "news@example.com"},
                  {"subject", "S {{v}}"},
                  {"text_body", "T {{v}}"},
                  {"html_body", "H {{v}} R {{{v}}} A {{&v}}"},
                  {"headers", {{"X-V", "{{v}}"}}}};
  b["substitutions"] = {{"v", "<b>&\"'"}};
  const Parsed p = Parse(BuildOk(b.dump()).messages[0].data);
  EXPECT_EQ(Field(p, "Subject"), "S <b>&\"'");
  EXPECT_EQ(Field(p, "X-V"), "<b>&\"'");
  const std::string type = Field(p, "Content-Type");
  const std::string boundary =
      type.substr(type.find('"') + 1, type.rfind('"') - type.find('"') - 1);
  const std::vector<Parsed> parts = Parts(p.body, boundary);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(DecodeQp(parts[0].body), "T <b>&\"'");
  EXPECT_EQ(DecodeQp(parts[1].body), "H &lt;b&gt;&amp;&quot;&apos; R <b>&\"' A <b>&\"'");
}

TEST(InjectBuilder, NonAsciiHeadersAreEncodedWords) {
  const std::string subject =
      "Grüße aus Köln – 東京 and a long tail to need several encoded-words: ÄÖÜ äöü ß €€€ {{x}}";
  Body b = Simple();
  b["content"] = {{"from", {{"email", "news@example.com"}, {"name", "Zürich News"}}},
                  {"subject", subject},
                  {"text_body", "x"},
                  {"headers", {{"X-Note", "naïve café"}}}};
  b["recipients"][0]["name"] = "Ünal Çelik";
  b["substitutions"] = {{"x", "ünd"}};
  const Request r = BuildOk(b.dump());
  CheckShape(r.messages[0]);
  EXPECT_FALSE(r.messages[0].body_8bit);  // all of it encoded
  EXPECT_FALSE(r.messages[0].smtputf8);
  const Parsed p = Parse(r.messages[0].data);
  std::string want = subject;
  want.replace(want.find("{{x}}"), 5, "ünd");
  const std::string encoded = Field(p, "Subject");
  EXPECT_NE(encoded.find("=?utf-8?B?"), std::string::npos);
  EXPECT_GT(std::count(encoded.begin(), encoded.end(), '?'), 8);  // several words
  EXPECT_EQ(DecodeWords(encoded), want);
  EXPECT_EQ(DecodeWords(Field(p, "From")), "Zürich News <news@example.com>");
  EXPECT_EQ(DecodeWords(Field(p, "To")), "Ünal Çelik <a@dest.test>");
  EXPECT_EQ(DecodeWords(Field(p, "X-Note")), "naïve café");
  for (const std::string& line : p.raw_header_lines) {
    EXPECT_LE(line.size(), 998u);
    for (char c : line) {
      EXPECT_LT(static_cast<unsigned char>(c), 0x80) << line;
    }
  }
}

TEST(InjectBuilder, DisplayNamesWithSpecialsAreQuoted) {
  Body b = Simple();
  b["content"]["from"] = {{"email", "news@example.com"}, {"name", "Doe, John \"JD\" \\ x"}};
  b["recipients"][0]["name"] = "Mr. Smith";
  const Parsed p = Parse(BuildOk(b.dump()).messages[0].data);
  EXPECT_EQ(Field(p, "From"), "\"Doe, John \\\"JD\\\" \\\\ x\" <news@example.com>");
  EXPECT_EQ(Field(p, "To"), "\"Mr. Smith\" <a@dest.test>");
}

TEST(InjectBuilder, LongHeadersFoldOrEncode) {
  std::string words;
  for (int i = 0; i < 60; ++i) {
    words += "word" + std::to_string(i) + " ";
  }
  words += "end";
  const std::string solid(1500, 'x');
  Body b = Simple();
  b["content"]["subject"] = words;
  b["content"]["headers"] = {{"X-Long", words}};
  b["recipients"][0]["name"] = std::string(1200, 'n');
  Request r = BuildOk(b.dump());
  CheckShape(r.messages[0]);
  Parsed p = Parse(r.messages[0].data);
  for (const std::string& line : p.raw_header_lines) {
    EXPECT_LE(line.size(), 998u) << line;
  }
  EXPECT_EQ(Field(p, "Subject"), words);  // folded at blanks, unfolds to the value
  EXPECT_EQ(Field(p, "X-Long"), words);
  EXPECT_GT(p.raw_header_lines.size(), p.fields.size() + 10);  // it did fold
  EXPECT_EQ(DecodeWords(Field(p, "To")), std::string(1200, 'n') + " <a@dest.test>");

  // A subject without a blank to fold at becomes encoded-words (it is unstructured)...
  b["content"]["subject"] = solid;
  b["content"].erase("headers");
  r = BuildOk(b.dump());
  CheckShape(r.messages[0]);
  EXPECT_EQ(DecodeWords(Field(Parse(r.messages[0].data), "Subject")), solid);
  // ... another header cannot be: refused.
  b["content"]["headers"] = {{"X-Solid", solid}};
  const Error e = BuildError(b.dump());
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.field, "content.headers.X-Solid");
}

TEST(InjectBuilder, QuotedPrintableRoundTrip) {
  const std::string text = std::string(300, 'a') + "\n" +                 // long line: soft breaks
                           "a=b==c " + std::string(100, '=') + "\n" +     // '=' escaped
                           "trailing spaces   \n" + "trailing tab\t\n" +  // blanks at line end
                           "tab\tinside and éñ non-ASCII\n" + std::string(74, 'b') + " \n" +
                           "\x01\x7f controls\r\n" + "ends without newline ";
  Body b = Simple();
  b["content"]["text_body"] = text;
  const Request r = BuildOk(b.dump());
  CheckShape(r.messages[0]);
  EXPECT_FALSE(r.messages[0].body_8bit);
  const Parsed p = Parse(r.messages[0].data);
  std::string want;
  for (size_t i = 0; i < text.size(); ++i) {  // the builder sends CRLF lines
    if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) {
      want += "\r\n";
    } else {
      want += text[i];
    }
  }
  EXPECT_EQ(DecodeQp(p.body), want + "\r\n");  // a single part ends with a line break
  EXPECT_NE(p.body.find("=3D"), std::string::npos);
  EXPECT_NE(p.body.find("=20\r\n"), std::string::npos);
  EXPECT_NE(p.body.find("=09\r\n"), std::string::npos);
  EXPECT_NE(p.body.find("=C3=A9"), std::string::npos);
}

// ---- Substitutions ----------------------------------------------------------------------------

TEST(InjectSubstitutions, RecipientOverTopLevelAndNameEmail) {
  Body b = Simple();
  b["content"] = "Subject: s\n\n{{code}}|{{brand}}|{{name}}|{{email}}";
  b["substitutions"] = {
      {"code", "default"}, {"brand", "Spate"}, {"name", "Customer"}, {"email", "top"}};
  b["recipients"] = Body::array(
      {{{"email", "a@dest.test"}, {"name", "Ann"}, {"substitutions", {{"code", "123"}}}},
       {{"email", "b@dest.test"}},
       {{"email", "c@dest.test"},
        {"name", "Carl"},
        {"substitutions", {{"name", "Nick"}, {"email", "override"}}}}});
  const Request r = BuildOk(b.dump());
  ASSERT_EQ(r.messages.size(), 3u);
  auto body = [&](size_t i) { return Parse(r.messages[i].data).body; };
  EXPECT_EQ(body(0), "123|Spate|Ann|a@dest.test\r\n");
  EXPECT_EQ(body(1), "default|Spate|Customer|b@dest.test\r\n");
  EXPECT_EQ(body(2), "default|Spate|Nick|override\r\n");
  EXPECT_EQ(r.messages[2].recipient, "c@dest.test");  // the envelope is not a substitution
}

TEST(InjectSubstitutions, ValuesOfEveryType) {
  Body b = Simple();
  b["content"] =
      "Subject: s\n\n{{n}} {{u}} {{f}} {{t}} [{{#no}}hidden{{/no}}{{^no}}shown{{/no}}]"
      "[{{nothing}}] {{#items}}<{{x}}>{{/items}}{{^empty}} none{{/empty}} {{o.deep}} "
      "{{#t}}yes{{/t}}";
  b["substitutions"] = {{"n", -42},
                        {"u", 18446744073709551615ull},
                        {"f", 1.5},
                        {"t", true},
                        {"no", false},
                        {"nothing", nullptr},
                        {"items", Body::array({{{"x", "a"}}, {{"x", "b"}}})},
                        {"empty", Body::array()},
                        {"o", {{"deep", "d"}}}};
  EXPECT_EQ(Parse(BuildOk(b.dump()).messages[0].data).body,
            "-42 18446744073709551615 1.5 true [shown][] <a><b> none d yes\r\n");
}

// ---- Refusals ---------------------------------------------------------------------------------

struct Refusal {
  const char* what;
  std::string json;
  int status;
  std::string field;
  std::string text_has = "";
};

std::string With(const std::function<void(Body&)>& change) {
  Body b = Simple();
  change(b);
  return b.dump();
}

TEST(InjectErrors, EachNamesItsField) {
  const std::vector<Refusal> cases = {
      {"malformed", "{\"envelope_sender\": ", 400, "body", "malformed JSON"},
      {"not an object", "[1, 2]", 400, "body"},
      {"empty body", "", 400, "body"},
      {"trailing garbage", Simple().dump() + " x", 400, "body", "malformed JSON"},
      {"body too deep", With([](Body& b) {
         b["deferred_spool"] = std::string(70, '[');  // a string: not nesting
         b["trace_headers"] = Body::parse(std::string(70, '[') + std::string(70, ']'));
       }),
       400, "body", "deeper"},
      {"no sender", With([](Body& b) { b.erase("envelope_sender"); }), 400, "envelope_sender"},
      {"sender not string", With([](Body& b) { b["envelope_sender"] = 5; }), 400,
       "envelope_sender"},
      {"empty sender", With([](Body& b) { b["envelope_sender"] = ""; }), 400, "envelope_sender"},
      {"sender no domain", With([](Body& b) { b["envelope_sender"] = "bounces"; }), 400,
       "envelope_sender"},
      {"sender dotless", With([](Body& b) { b["envelope_sender"] = "b@localhost"; }), 400,
       "envelope_sender", "dot"},
      {"sender route", With([](Body& b) { b["envelope_sender"] = "@r.test:b@x.test"; }), 400,
       "envelope_sender"},
      {"bad recipient", With([](Body& b) {
         b["recipients"].push_back({{"email", "not an address"}});
       }),
       400, "recipients[1].email", "not an address"},
      {"recipient CRLF", With([](Body& b) {
         b["recipients"].push_back({{"email", "x@y.test\r\nRCPT TO:<z@z.test>"}});
       }),
       400, "recipients[1].email"},
      {"recipient too long",
       With([](Body& b) { b["recipients"][0]["email"] = std::string(250, 'a') + "@x.test"; }), 400,
       "recipients[0].email", "254"},
      {"recipient no email", With([](Body& b) {
         b["recipients"].push_back({{"name", "N"}});
       }),
       400, "recipients[1].email"},
      {"recipient not object", With([](Body& b) { b["recipients"].push_back("a@b.test"); }), 400,
       "recipients[1]"},
      {"recipient unknown key", With([](Body& b) { b["recipients"][0]["emial"] = "x"; }), 400,
       "recipients[0].emial"},
      {"recipient name CRLF",
       With([](Body& b) { b["recipients"][0]["name"] = "Ann\r\nBcc: x@y.test"; }), 400,
       "recipients[0].name"},
      {"recipient subs not object",
       With([](Body& b) { b["recipients"][0]["substitutions"] = "x"; }), 400,
       "recipients[0].substitutions"},
      {"no recipients", With([](Body& b) { b.erase("recipients"); }), 400, "recipients"},
      {"empty recipients", With([](Body& b) { b["recipients"] = Body::array(); }), 400,
       "recipients"},
      {"recipients object", With([](Body& b) { b["recipients"] = Body::object(); }), 400,
       "recipients"},
      {"unknown key", With([](Body& b) { b["campaign"] = "x"; }), 400, "campaign", "unknown"},
      {"subs not object", With([](Body& b) { b["substitutions"] = Body::array(); }), 400,
       "substitutions"},
      {"subs too deep", With([](Body& b) {
         Body deep = "leaf";
         for (int i = 0; i < 20; ++i) {
           deep = Body::array({deep});
         }
         b["substitutions"] = {{"d", deep}};
       }),
       400, "substitutions", "deeper"},
      {"no content", With([](Body& b) { b.erase("content"); }), 400, "content"},
      {"content number", With([](Body& b) { b["content"] = 7; }), 400, "content"},
      {"content array", With([](Body& b) { b["content"] = Body::array({"x"}); }), 400, "content"},
      {"neither body", With([](Body& b) { b["content"].erase("text_body"); }), 400, "content",
       "text_body or html_body"},
      {"no from", With([](Body& b) { b["content"].erase("from"); }), 400, "content.from"},
      {"bad from", With([](Body& b) { b["content"]["from"] = "news"; }), 400, "content.from"},
      {"from name CRLF", With([](Body& b) {
         b["content"]["from"] = {{"email", "n@x.test"}, {"name", "a\nb"}};
       }),
       400, "content.from.name"},
      {"from not a mailbox", With([](Body& b) { b["content"]["from"] = 1; }), 400, "content.from"},
      {"bad reply_to", With([](Body& b) { b["content"]["reply_to"] = "x@"; }), 400,
       "content.reply_to"},
      {"content unknown key", With([](Body& b) { b["content"]["attachments"] = Body::array(); }),
       400, "content.attachments"},
      {"subject not string", With([](Body& b) { b["content"]["subject"] = 1; }), 400,
       "content.subject"},
      {"headers not object", With([](Body& b) { b["content"]["headers"] = "X: y"; }), 400,
       "content.headers"},
      {"header value not string", With([](Body& b) {
         b["content"]["headers"] = {{"X-N", 1}};
       }),
       400, "content.headers.X-N"},
      {"header name blank", With([](Body& b) {
         b["content"]["headers"] = {{"X Foo", "v"}};
       }),
       400, "content.headers.X Foo"},
      {"header name colon", With([](Body& b) {
         b["content"]["headers"] = {{"X:Foo", "v"}};
       }),
       400, "content.headers.X:Foo"},
      {"header generated", With([](Body& b) {
         b["content"]["headers"] = {{"from", "v"}};
       }),
       400, "content.headers.from"},
      {"header CRLF literal", With([](Body& b) {
         b["content"]["headers"] = {{"X-Foo", "a\r\nBcc: x@y.test"}};
       }),
       400, "content.headers.X-Foo", "injection"},
      {"header CRLF by substitution", With([](Body& b) {
         b["content"]["headers"] = {{"X-Foo", "{{v}}"}};
         b["recipients"][0]["substitutions"] = {{"v", "a\nBcc: x@y.test"}};
       }),
       400, "content.headers.X-Foo", "injection"},
      {"header control octet", With([](Body& b) {
         b["content"]["headers"] = {{"X-Bell", "ring\x07"}};
       }),
       400, "content.headers.X-Bell", "control"},
      {"subject CRLF by substitution", With([](Body& b) {
         b["content"]["subject"] = "Hi {{v}}";
         b["substitutions"] = {{"v", "a\rBcc: x@y.test"}};
       }),
       400, "content.subject"},
      {"unclosed section text", With([](Body& b) { b["content"]["text_body"] = "{{#x}} y"; }), 400,
       "content.text_body", "template"},
      {"unclosed section html", With([](Body& b) { b["content"]["html_body"] = "a {{^x}}"; }), 400,
       "content.html_body"},
      {"unclosed tag subject", With([](Body& b) { b["content"]["subject"] = "{{ x"; }), 400,
       "content.subject"},
      {"unopened section header", With([](Body& b) {
         b["content"]["headers"] = {{"X-T", "{{/x}}"}};
       }),
       400, "content.headers.X-T"},
      {"unclosed section whole", With([](Body& b) { b["content"] = "Subject: {{#x}}\n\nb"; }), 400,
       "content"},
      {"bad set delimiter", With([](Body& b) { b["content"]["text_body"] = "{{=<% =}}"; }), 400,
       "content.text_body"},
      {"partial", With([](Body& b) { b["content"]["text_body"] = "{{> other}}"; }), 400,
       "content.text_body", "partial"},
      {"nested too deep", With([](Body& b) {
         std::string t;
         for (int i = 0; i < 33; ++i) {
           t += "{{#a}}";
         }
         for (int i = 0; i < 33; ++i) {
           t += "{{/a}}";
         }
         b["content"]["text_body"] = t;
       }),
       400, "content.text_body", "nested"},
      {"whole not headers", With([](Body& b) { b["content"] = "Hello {{name}}"; }), 400, "content",
       "not a header field"},
      {"whole long line",
       With([](Body& b) { b["content"] = "Subject: s\n\n" + std::string(999, 'x'); }), 400,
       "content", "998"},
      {"whole empty", With([](Body& b) { b["content"] = ""; }), 400, "content"},
      {"whole NUL", With([](Body& b) { b["content"] = std::string("S: s\n\na\0b", 10); }), 400,
       "content", "NUL"},
  };
  for (const Refusal& c : cases) {
    SCOPED_TRACE(c.what);
    const Error e = BuildError(c.json);
    EXPECT_EQ(e.status, c.status);
    EXPECT_EQ(e.field, c.field);
    EXPECT_NE(e.text.find(c.text_has), std::string::npos) << e.text;
    EXPECT_FALSE(e.text.empty());
  }
}

TEST(InjectErrors, KumoMtaKeysAreAccepted) {
  const Request r = BuildOk(With([](Body& b) {
    b["deferred_spool"] = false;
    b["deferred_generation"] = true;
    b["trace_headers"] = {{"received_header", true}};
  }));
  EXPECT_EQ(r.messages.size(), 1u);
}

TEST(InjectErrors, TooManyRecipients) {
  const std::string json = With([](Body& b) {
    b["recipients"].push_back({{"email", "b@dest.test"}});
    b["recipients"].push_back({{"email", "c@dest.test"}});
  });
  Limits limits;
  limits.max_recipients = 2;
  const Error e = BuildError(json, limits);
  EXPECT_EQ(e.status, 413);
  EXPECT_EQ(e.field, "recipients");
  limits.max_recipients = 3;
  EXPECT_EQ(BuildOk(json, limits).messages.size(), 3u);
}

TEST(InjectErrors, MessageTooBig) {
  const std::string json = With([](Body& b) {
    b["recipients"].push_back({{"email", "b@dest.test"}, {"substitutions", {{"pad", "x"}}}});
    b["content"]["text_body"] = "{{pad}}";
    b["recipients"][1]["substitutions"]["pad"] = std::string(5000, 'p');
  });
  Limits limits;
  const size_t small = BuildOk(json, limits).messages[0].data.size();
  limits.max_message_bytes = small + 100;
  const Error e = BuildError(json, limits);
  EXPECT_EQ(e.status, 413);
  EXPECT_EQ(e.field, "recipients[1]");
  limits.max_message_bytes = 0;
  limits.max_total_bytes = small + 100;
  EXPECT_EQ(BuildError(json, limits).field, "recipients");
}

TEST(InjectErrors, RenderingThatExplodesIsRefused) {
  // Ten nested sections over a list of ten: 10^10 copies of the text, if it were rendered.
  std::string t;
  for (int i = 0; i < 10; ++i) {
    t += "{{#l}}";
  }
  t += "0123456789";
  for (int i = 0; i < 10; ++i) {
    t += "{{/l}}";
  }
  const std::string json = With([&](Body& b) {
    b["content"]["text_body"] = t;
    b["substitutions"] = {{"l", Body::array({1, 2, 3, 4, 5, 6, 7, 8, 9, 10})}};
  });
  const Error e = BuildError(json);
  EXPECT_EQ(e.status, 413);
  EXPECT_EQ(e.field, "recipients[0]");
  EXPECT_NE(e.text.find("content.text_body"), std::string::npos);
}

TEST(InjectErrors, OutputIsUntouchedOnError) {
  Request r;
  r.envelope_sender = "keep";
  Error e;
  EXPECT_FALSE(Build("{}", {}, TestContext(), &r, &e));
  EXPECT_EQ(r.envelope_sender, "keep");
  EXPECT_EQ(e.field, "envelope_sender");
}

// ---- Flags ------------------------------------------------------------------------------------

TEST(InjectFlags, Smtputf8FollowsTheAddresses) {
  Body b = Simple();
  b["recipients"] = Body::array({{{"email", "ascii@dest.test"}}, {{"email", "用户@例子.广告"}}});
  Request r = BuildOk(b.dump());
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_FALSE(r.messages[0].smtputf8);
  EXPECT_FALSE(r.messages[0].body_8bit);
  EXPECT_TRUE(r.messages[1].smtputf8);
  EXPECT_TRUE(r.messages[1].body_8bit);  // the To: field holds the address as it is
  EXPECT_EQ(r.messages[1].recipient, "用户@例子.广告");
  CheckShape(r.messages[1]);

  b = Simple();
  b["envelope_sender"] = "rücklauf@example.com";
  r = BuildOk(b.dump());
  EXPECT_TRUE(r.messages[0].smtputf8);
  EXPECT_FALSE(r.messages[0].body_8bit);
}

}  // namespace
}  // namespace spate::inject
