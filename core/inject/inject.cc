// core/inject/inject.cc: the HTTP injection request -> messages (see inject.h).
//
// Flow: survey the body (a SAX pass: the parse error, the nesting, the order of the custom
// headers), parse it (nlohmann-json, no exceptions), check the top level, compile every
// template once (kainjow Mustache), then per recipient: check it, render its templates in a
// Scope (its substitutions over the top-level ones) and build its message.
//
// Bounds on hostile input, checked before kainjow sees a template (ScanTemplate mirrors its
// parser): sections nest at most kMaxSectionDepth deep (its parser and renderer recurse per
// level and copy each section's text once per level), a template holds at most
// kMaxTemplateWhitespace blank octets (its parser makes an object of ~150 octets per blank), and
// one rendering does at most kMaxRenderWork octets of work (a section over a list repeats its
// text per item: nested ones multiply). The last is counted by Scope, the only code of ours
// kainjow calls while rendering, and enforced by throwing through kainjow: the one exception in
// this module, caught in Render(). Everything else kainjow or the library throws (bad_alloc) is
// caught in Build().
#include "core/inject/inject.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "core/smtp/address.h"
#include "core/smtp/ascii.h"
#include "core/smtp/date.h"

#include <kainjow/mustache.hpp>
#include <nlohmann/json.hpp>

namespace spate::inject {
namespace {

using Json = nlohmann::json;
namespace mustache = kainjow::mustache;
using Data = mustache::data;

constexpr size_t kMaxSectionDepth = 32;
constexpr size_t kMaxJsonDepth = 64;  // nested objects and arrays in the body
constexpr size_t kMaxDataDepth = 16;  // ... in substitutions
constexpr size_t kMaxTemplateWhitespace = 1 << 19;
constexpr size_t kMaxRenderWork = 32 << 20;
constexpr size_t kMaxLine = 998;        // RFC 5322 §2.1.1, without the CRLF
constexpr size_t kFoldAt = 78;          // RFC 5322 §2.1.1: SHOULD
constexpr size_t kMaxHeaderName = 128;  // ours: keeps "Name: " and an encoded-word in 998
constexpr size_t kMaxAddress = 254;     // RFC 5321 §4.5.3.1.3: a path of 256 with "<" ">"
constexpr size_t kMaxShown = 200;       // how much of a key or value an error quotes

bool Fail(Error* error, int status, std::string field, std::string text) {
  error->status = status;
  error->field = std::move(field);
  error->text = std::move(text);
  return false;
}

// The octets of the UTF-8 character at s[i] (1 for a stray octet).
size_t Utf8Length(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  size_t len = 1;
  while (len < n && i + len < s.size() && (static_cast<unsigned char>(s[i + len]) & 0xC0) == 0x80) {
    ++len;
  }
  return len;
}

// `s` cut to about kMaxShown octets at a character boundary, for an error's field or text.
std::string Clip(std::string_view s) {
  if (s.size() <= kMaxShown) {
    return std::string(s);
  }
  size_t end = 0;
  while (end < s.size()) {
    const size_t n = Utf8Length(s, end);
    if (end + n > kMaxShown) {
      break;
    }
    end += n;
  }
  return std::string(s.substr(0, end)) + "...";
}

std::string Quoted(std::string_view s) {
  return "\"" + Clip(s) + "\"";
}

std::string Index(std::string_view array, size_t i) {
  return std::string(array) + "[" + std::to_string(i) + "]";
}

bool IsWsp(char c) {
  return c == ' ' || c == '\t';
}

// A control octet (C0 or DEL): none belongs in an address, a display name or a header value
// (HTAB excepted there).
bool IsControl(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return c < 0x20 || c == 0x7f;
}

// ---- Addresses ---------------------------------------------------------------------------------

// local@domain as core/smtp parses a Mailbox (RFC 5321 §4.1.2; UTF-8 as RFC 6531 allows it),
// with no source route, no blank or control octet, a domain with a dot or an address literal.
bool CheckAddress(std::string_view a, std::string* why) {
  if (a.empty()) {
    *why = "an address is required";
    return false;
  }
  if (a.size() > kMaxAddress) {
    *why = "the address is longer than 254 octets";
    return false;
  }
  for (char c : a) {
    if (c == ' ' || IsControl(c) || c == '<' || c == '>') {
      *why = "not a valid address: " + Quoted(a) + " (a blank, a control octet or <>)";
      return false;
    }
  }
  const std::string path = "<" + std::string(a) + ">";
  Result<smtp::Path> parsed = smtp::ParsePath(path, smtp::PathKind::kForward, smtp::HasNonAscii(a));
  const std::string_view domain = smtp::DomainOf(a);
  if (!parsed || parsed.value().mailbox != a || domain.empty()) {
    *why = "not a valid address: " + Quoted(a) + " (want local@domain)";
    return false;
  }
  if (domain.front() != '[' && domain.find('.') == std::string_view::npos) {
    *why = "not a valid address: " + Quoted(a) + " (the domain has no dot)";
    return false;
  }
  return true;
}

bool CheckDisplayName(std::string_view name, std::string* why) {
  if (std::any_of(name.begin(), name.end(), IsControl)) {
    *why = "the name holds a control octet (CR, LF, TAB, ...)";
    return false;
  }
  return true;
}

struct Mailbox {
  std::string email;
  std::string name;  // "" when none
};

// "x@y" or {"email": "x@y", "name": "X"?} at `field`.
bool ParseMailbox(const Json& j, const std::string& field, Mailbox* out, Error* error) {
  std::string why;
  if (j.is_string()) {
    out->email = j.get<std::string>();
  } else if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() != "email" && it.key() != "name") {
        return Fail(error, 400, field + "." + Clip(it.key()), "unknown field");
      }
    }
    const auto email = j.find("email");
    if (email == j.end() || !email->is_string()) {
      return Fail(error, 400, field + ".email", "a string address is required");
    }
    out->email = email->get<std::string>();
    const auto name = j.find("name");
    if (name != j.end()) {
      if (!name->is_string()) {
        return Fail(error, 400, field + ".name", "must be a string");
      }
      out->name = name->get<std::string>();
      if (!CheckDisplayName(out->name, &why)) {
        return Fail(error, 400, field + ".name", why);
      }
    }
  } else {
    return Fail(error, 400, field, "must be an address or {\"email\", \"name\"}");
  }
  if (!CheckAddress(out->email, &why)) {
    return Fail(error, 400, field, why);
  }
  return true;
}

// ---- Substitutions -----------------------------------------------------------------------------

// JSON as Mustache data: strings as they are, numbers and true as their text, false and null
// as Mustache's false, arrays as lists, objects as objects. False when nested too deep.
bool ToData(const Json& j, size_t depth, Data* out) {
  switch (j.type()) {
    case Json::value_t::object: {
      if (depth >= kMaxDataDepth) {
        return false;
      }
      Data d(Data::type::object);
      for (auto it = j.begin(); it != j.end(); ++it) {
        Data child;
        if (!ToData(it.value(), depth + 1, &child)) {
          return false;
        }
        d[it.key()] = std::move(child);
      }
      *out = std::move(d);
      return true;
    }
    case Json::value_t::array: {
      if (depth >= kMaxDataDepth) {
        return false;
      }
      Data d(Data::type::list);
      for (const Json& item : j) {
        Data child;
        if (!ToData(item, depth + 1, &child)) {
          return false;
        }
        d.push_back(child);
      }
      *out = std::move(d);
      return true;
    }
    case Json::value_t::string:
      *out = Data(j.get_ref<const std::string&>());
      return true;
    case Json::value_t::boolean:
      *out = j.get<bool>() ? Data("true") : Data(false);
      return true;
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float:
      *out = Data(j.dump());
      return true;
    default:  // null (a parsed document holds nothing else)
      *out = Data(false);
      return true;
  }
}

// A "substitutions" object at `field` as Mustache data (an empty object when absent).
bool ParseSubstitutions(const Json* j, const std::string& field, Data* out, Error* error) {
  if (j == nullptr) {
    *out = Data(Data::type::object);
    return true;
  }
  if (!j->is_object()) {
    return Fail(error, 400, field, "must be an object");
  }
  if (!ToData(*j, 0, out)) {
    return Fail(error, 400, field,
                "nested deeper than " + std::to_string(kMaxDataDepth) + " objects and arrays");
  }
  return true;
}

// ---- Templates ---------------------------------------------------------------------------------

// What ScanTemplate finds.
struct Shape {
  size_t depth = 0;        // of section nesting
  size_t max_section = 0;  // the longest section text (to its end tag, or the end)
  size_t blanks = 0;       // SP, HTAB, CR, LF octets
  bool partial = false;
};

std::string Trim(std::string_view s) {
  auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
  };
  while (!s.empty() && space(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && space(s.back())) {
    s.remove_suffix(1);
  }
  return std::string(s);
}

// A set-delimiter tag "=<begin> <end>=", as kainjow's parse_set_delimiter_tag reads it.
bool SetDelimiters(const std::string& tag, std::string* begin, std::string* end) {
  if (tag.size() < 5 || tag.back() != '=') {
    return false;
  }
  const std::string inner = Trim(std::string_view(tag).substr(1, tag.size() - 2));
  const size_t space = inner.find(' ');
  if (space == std::string::npos) {
    return false;
  }
  const size_t next = inner.find_first_not_of(' ', space + 1);
  if (next == std::string::npos) {
    return false;
  }
  std::string b = inner.substr(0, space);
  std::string e = inner.substr(next);
  for (const std::string* d : {&b, &e}) {
    if (d->find_first_of("= \t\n\v\f\r") != std::string::npos) {
      return false;
    }
  }
  *begin = std::move(b);
  *end = std::move(e);
  return true;
}

// The tags of a template as kainjow's parser (mustache.hpp, parser::parse) finds them: a tag
// runs from the begin delimiter to the first end delimiter ("}}}" after "{{{"), delimiters
// change with "{{=<% %>=}}". Where the parser would fail, the scan stops: kainjow reports it.
Shape ScanTemplate(const std::string& in) {
  Shape shape;
  for (char c : in) {
    shape.blanks += (c == ' ' || c == '\t' || c == '\r' || c == '\n') ? 1 : 0;
  }
  std::string begin = "{{";
  std::string end = "}}";
  bool brace = true;
  std::vector<size_t> starts;  // where each open section's text starts
  size_t pos = 0;
  while (pos < in.size()) {
    const size_t at = in.find(begin, pos);
    if (at == std::string::npos) {
      break;
    }
    size_t contents = at + begin.size();
    const bool triple = brace && at != in.size() - 2 && in[contents] == begin[0];
    if (triple) {
      ++contents;
    }
    const std::string close = triple ? "}}}" : end;
    const size_t stop = in.find(close, contents);
    if (stop == std::string::npos) {
      break;
    }
    const std::string tag = Trim(std::string_view(in).substr(contents, stop - contents));
    pos = stop + close.size();
    if (!tag.empty() && tag[0] == '=') {
      if (!SetDelimiters(tag, &begin, &end)) {
        break;
      }
      brace = begin == "{{" && end == "}}";
      continue;
    }
    if (triple || tag.empty()) {
      continue;
    }
    if (tag[0] == '#' || tag[0] == '^') {
      starts.push_back(pos);
      shape.depth = std::max(shape.depth, starts.size());
    } else if (tag[0] == '/') {
      if (starts.empty()) {
        break;
      }
      shape.max_section = std::max(shape.max_section, at - starts.back());
      starts.pop_back();
    } else if (tag[0] == '>') {
      shape.partial = true;
    }
  }
  for (size_t start : starts) {
    shape.max_section = std::max(shape.max_section, in.size() - start);
  }
  return shape;
}

struct Template {
  std::string field;  // its JSON path, for errors
  std::string text;   // the source, which is also the rendering when it holds no tag
  std::unique_ptr<mustache::mustache> compiled;  // null when the text holds no "{{"
  size_t max_section = 0;
  bool html = false;
};

bool Compile(std::string text, std::string field, bool html, Template* t, Error* error) {
  t->field = std::move(field);
  t->text = std::move(text);
  t->html = html;
  if (t->text.find("{{") == std::string::npos) {
    return true;  // every tag starts with "{{" until a "{{=...=}}" tag
  }
  const Shape shape = ScanTemplate(t->text);
  if (shape.depth > kMaxSectionDepth) {
    return Fail(error, 400, t->field,
                "sections nested deeper than " + std::to_string(kMaxSectionDepth));
  }
  if (shape.partial) {
    return Fail(error, 400, t->field, "partials ({{> name}}) are not supported");
  }
  if (shape.blanks > kMaxTemplateWhitespace) {
    return Fail(error, 413, t->field,
                "more than " + std::to_string(kMaxTemplateWhitespace) + " blanks in a template");
  }
  t->max_section = shape.max_section;
  t->compiled = std::make_unique<mustache::mustache>(t->text);
  if (!t->compiled->is_valid()) {
    return Fail(error, 400, t->field, "not a valid template: " + t->compiled->error_message());
  }
  if (!html) {
    t->compiled->set_custom_escape([](const std::string& s) { return s; });
  }
  return true;
}

// Thrown by Scope out of kainjow's renderer, caught by Render().
struct TooMuchWork {};

// The variables of one rendering: the context stack kainjow pushes sections onto, over the
// recipient's data, over the top-level data. It bills each lookup (plus the string it finds,
// times what HTML escaping can make of it) and each section entry (the longest section text:
// what one entry can emit), so the output and the work stay under kMaxRenderWork. Partials
// are never found.
class Scope final : public mustache::basic_context<std::string> {
 public:
  Scope(const Data* top, const Data* own, const Template& t)
      : items_{top, own},
        push_cost_(t.max_section + 1),
        factor_(t.html ? 6 : 1),
        work_(t.text.size()) {}

  void push(const Data* data) override {
    Bill(push_cost_);
    items_.push_back(data);
  }
  void pop() override { items_.pop_back(); }

  const Data* get(const std::string& name) const override {
    Bill(1 + name.size());
    const Data* found = Find(name);
    if (found != nullptr && found->is_string()) {
      Bill(found->string_value().size() * factor_);
    }
    return found;
  }

  const Data* get_partial(const std::string&) const override { return nullptr; }

 private:
  void Bill(size_t n) const {
    work_ += n;
    if (work_ > kMaxRenderWork) {
      throw TooMuchWork{};
    }
  }

  // "." is the innermost item; "a.b" is b in a, in the innermost item that has both.
  const Data* Find(const std::string& name) const {
    if (name == ".") {
      return items_.back();
    }
    for (auto it = items_.rbegin(); it != items_.rend(); ++it) {
      const Data* d = *it;
      size_t start = 0;
      while (d != nullptr) {
        const size_t dot = name.find('.', start);
        d = d->get(name.substr(start, dot == std::string::npos ? dot : dot - start));
        if (dot == std::string::npos) {
          break;
        }
        start = dot + 1;
      }
      if (d != nullptr) {
        return d;
      }
    }
    return nullptr;
  }

  std::vector<const Data*> items_;
  size_t push_cost_;
  size_t factor_;
  mutable size_t work_;
};

bool Render(const Template& t, const Data& top, const Data& own, size_t index, std::string* out,
            Error* error) {
  if (!t.compiled) {
    *out = t.text;
    return true;
  }
  Scope scope(&top, &own, t);
  try {
    *out = t.compiled->render(scope);
  } catch (const TooMuchWork&) {
    return Fail(error, 413, Index("recipients", index),
                "rendering " + t.field + " takes more than " +
                    std::to_string(kMaxRenderWork >> 20) + " MiB");
  }
  if (!t.compiled->is_valid()) {
    return Fail(error, 400, t.field, "template error: " + t.compiled->error_message());
  }
  return true;
}

// ---- Message text ------------------------------------------------------------------------------

// Bare LF and bare CR become CRLF (RFC 5322 §2.1: lines end in CRLF, CR and LF only together).
std::string NormalizeCrlf(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 32);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      out += "\r\n";
      if (i + 1 < s.size() && s[i + 1] == '\n') {
        ++i;
      }
    } else if (s[i] == '\n') {
      out += "\r\n";
    } else {
      out += s[i];
    }
  }
  return out;
}

bool EndsWithCrlf(std::string_view s) {
  return s.size() >= 2 && s.substr(s.size() - 2) == "\r\n";
}

// The first line of (CRLF-ended) `s` longer than kMaxLine octets, 1-based; 0 when none.
size_t LongLine(std::string_view s) {
  size_t line = 1;
  while (!s.empty()) {
    const size_t crlf = s.find("\r\n");
    const size_t len = crlf == std::string_view::npos ? s.size() : crlf;
    if (len > kMaxLine) {
      return line;
    }
    s.remove_prefix(crlf == std::string_view::npos ? s.size() : crlf + 2);
    ++line;
  }
  return 0;
}

// field-name = 1*ftext, printable ASCII but ':' (RFC 5322 §3.6.8).
bool IsFieldName(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c >= 33 && c <= 126 && c != ':';
  });
}

std::string Base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16 |
                       static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8 |
                       static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < in.size()) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) {
      v |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    }
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// RFC 2047 "B" encoded-words of UTF-8 text, separated by spaces: each at most 75 octets (§2),
// holding whole characters (§5); the space between two is not part of the text (§6.2), and is
// where the header folds.
std::string EncodeWords(std::string_view text) {
  constexpr size_t kChunk = 45;  // 60 base64 octets: "=?utf-8?B?" + 60 + "?=" is 72
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t end = i;
    while (end < text.size()) {
      const size_t n = Utf8Length(text, end);
      if (end + n - i > kChunk && end > i) {
        break;
      }
      end += n;
    }
    if (!out.empty()) {
      out += ' ';
    }
    out += "=?utf-8?B?" + Base64(text.substr(i, end - i)) + "?=";
    i = end;
  }
  return out;
}

// "Name: value" CRLF into *out, folded before white space (RFC 5322 §3.2.2; unfolding gives the
// value back) so that lines stay within 78 octets where the value lets them. False when a line
// would be longer than 998 octets anyway.
bool FoldHeader(std::string_view name, std::string_view value, std::string* out) {
  std::string field;
  field.reserve(name.size() + value.size() + 8);
  field.append(name);
  field += ": ";
  size_t col = field.size();
  size_t widest = col;
  bool placed = false;  // a word of the value is on this line
  size_t i = 0;
  while (i < value.size()) {
    size_t j = i;
    while (j < value.size() && IsWsp(value[j])) {
      ++j;
    }
    size_t k = j;
    while (k < value.size() && !IsWsp(value[k])) {
      ++k;
    }
    const std::string_view word = value.substr(i, k - i);  // blanks, then text
    // Fold before the blanks, never leaving a line of blanks alone (RFC 5322 §3.2.2).
    if (placed && j > i && k > j && col + word.size() > kFoldAt) {
      field += "\r\n";
      col = 0;
    }
    field.append(word);
    col += word.size();
    widest = std::max(widest, col);
    placed = true;
    i = k;
  }
  field += "\r\n";
  if (widest > kMaxLine) {
    return false;
  }
  out->append(field);
  return true;
}

// A display name as a phrase: atoms as they are, a quoted-string when it holds specials or
// blanks at its ends (RFC 5322 §3.2.3, §3.2.4), encoded-words when it holds non-ASCII or
// something that reads as one (RFC 2047 §5 (3)), or when `encode`.
std::string Phrase(std::string_view name, bool encode) {
  if (encode || smtp::HasNonAscii(name) || name.find("=?") != std::string_view::npos) {
    return EncodeWords(name);
  }
  const bool quote = name.find_first_of("()<>[]:;@\\,.\"") != std::string_view::npos ||
                     name.front() == ' ' || name.back() == ' ';
  if (!quote) {
    return std::string(name);
  }
  std::string out = "\"";
  for (char c : name) {
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  out += '"';
  return out;
}

// "Name: Display <email>" or "Name: email".
// The address is at most 254 octets, so the field always fits.
void AddressHeader(std::string_view name, const Mailbox& box, std::string* out) {
  if (box.name.empty()) {
    FoldHeader(name, box.email, out);
  } else if (!FoldHeader(name, Phrase(box.name, false) + " <" + box.email + ">", out)) {
    // Too long to fold as written: encoded-words fold anywhere.
    FoldHeader(name, Phrase(box.name, true) + " <" + box.email + ">", out);
  }
}

// Quoted-printable (RFC 2045 §6.7) of CRLF-normalized text: CRLF stays a hard line break; '=',
// controls and non-ASCII octets become =XX (rules 1, 2); a blank before a line break or at the
// end is =20 / =09 (rule 3); a soft line break "=" keeps each encoded line within 76 (rule 5).
// The result ends with CRLF exactly when the text does.
std::string QuotedPrintable(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  size_t col = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      out += "\r\n";
      col = 0;
      ++i;
      continue;
    }
    const bool line_end = i + 1 == text.size() || text.compare(i + 1, 2, "\r\n") == 0;
    const auto u = static_cast<unsigned char>(c);
    const bool literal = (u >= 33 && u <= 126 && c != '=') || (IsWsp(c) && !line_end);
    const size_t width = literal ? 1 : 3;
    if (col + width > 75) {
      out += "=\r\n";
      col = 0;
    }
    if (literal) {
      out += c;
    } else {
      out += '=';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
    col += width;
  }
  return out;
}

// ---- The request -------------------------------------------------------------------------------

struct Builder {
  Mailbox from;
  std::optional<Mailbox> reply_to;
  std::optional<Template> subject;
  std::optional<Template> text;
  std::optional<Template> html;
  std::vector<Template> headers;  // field is "content.headers.<name>"
  std::vector<std::string> header_names;
};

struct Recipient {
  std::string email;
  std::optional<std::string> name;
  Data data;  // its substitutions, with email and name
};

// The first pass over the body: a SAX parse that builds nothing and notes the parse error, a
// nesting deeper than kMaxJsonDepth (refused before nlohmann-json builds a document of it),
// and the order of the keys of content.headers. nlohmann::json sorts an object's keys;
// nlohmann::ordered_json keeps them but costs a linear search per key, and the DOM parser with
// a callback a scan of the parent per nested value: both quadratic on hostile bodies.
class Survey final : public nlohmann::json_sax<Json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return Open(true); }
  bool start_array(std::size_t) override { return Open(false); }
  bool end_object() override { return Close(); }
  bool end_array() override { return Close(); }

  bool key(string_t& key) override {
    if (open_.size() == 1 && key == "content") {
      header_names_.clear();  // a repeated key: the last one counts, in nlohmann-json too
    }
    if (open_.size() == 3 && open_[0].object && open_[1].object && open_[2].object &&
        open_[0].key == "content" && open_[1].key == "headers") {
      header_names_.push_back(key);
    }
    if (open_.size() <= 2) {
      open_.back().key = key;
    }
    return true;
  }

  bool parse_error(std::size_t, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." without the tag.
    const std::string what = ex.what();
    const size_t tag = what.find("] ");
    error_ = "malformed JSON: " + (tag == std::string::npos ? what : what.substr(tag + 2));
    return false;
  }

  // Runs the pass; false with the error's text.
  bool Run(std::string_view body, std::string* why) {
    if (Json::sax_parse(body.begin(), body.end(), this)) {
      return true;
    }
    *why = too_deep_ ? "nested deeper than " + std::to_string(kMaxJsonDepth) + " objects and arrays"
           : error_.empty() ? "malformed JSON"
                            : error_;
    return false;
  }

  const std::vector<std::string>& header_names() const { return header_names_; }

 private:
  struct Level {
    bool object;
    std::string key;  // the last key read in it (kept only at the top two levels)
  };

  bool Open(bool object) {
    if (open_.size() >= kMaxJsonDepth) {
      too_deep_ = true;
      return false;
    }
    open_.push_back({object, {}});
    return true;
  }
  bool Close() {
    open_.pop_back();
    return true;
  }

  std::vector<Level> open_;
  std::vector<std::string> header_names_;
  std::string error_;
  bool too_deep_ = false;
};

bool IsGenerated(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "From",         "To",           "Reply-To",
      "Subject",      "Date",         "Message-ID",
      "MIME-Version", "Content-Type", "Content-Transfer-Encoding"};
  return std::any_of(std::begin(kNames), std::end(kNames),
                     [&](std::string_view n) { return smtp::EqualsNoCase(n, name); });
}

bool ParseBuilder(const Json& content, const std::vector<std::string>& order, Builder* b,
                  Error* error) {
  for (auto it = content.begin(); it != content.end(); ++it) {
    static constexpr std::string_view kKeys[] = {"from",      "reply_to",  "subject",
                                                 "text_body", "html_body", "headers"};
    if (std::find(std::begin(kKeys), std::end(kKeys), it.key()) == std::end(kKeys)) {
      return Fail(error, 400, "content." + Clip(it.key()), "unknown field");
    }
  }
  const auto from = content.find("from");
  if (from == content.end()) {
    return Fail(error, 400, "content.from", "required");
  }
  if (!ParseMailbox(*from, "content.from", &b->from, error)) {
    return false;
  }
  if (const auto reply_to = content.find("reply_to"); reply_to != content.end()) {
    b->reply_to.emplace();
    if (!ParseMailbox(*reply_to, "content.reply_to", &*b->reply_to, error)) {
      return false;
    }
  }
  struct Part {
    const char* key;
    std::optional<Template>* slot;
    bool html;
  };
  for (const Part& part : {Part{"subject", &b->subject, false}, Part{"text_body", &b->text, false},
                           Part{"html_body", &b->html, true}}) {
    const auto j = content.find(part.key);
    if (j == content.end()) {
      continue;
    }
    const std::string field = std::string("content.") + part.key;
    if (!j->is_string()) {
      return Fail(error, 400, field, "must be a string");
    }
    part.slot->emplace();
    if (!Compile(j->get<std::string>(), field, part.html, &**part.slot, error)) {
      return false;
    }
  }
  if (!b->text && !b->html) {
    return Fail(error, 400, "content", "give text_body or html_body");
  }
  const auto headers = content.find("headers");
  if (headers == content.end()) {
    return true;
  }
  if (!headers->is_object()) {
    return Fail(error, 400, "content.headers", "must be an object");
  }
  // In the body's order (`order`), then any the survey missed (none).
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const std::string& name : order) {
    if (headers->contains(name) && seen.insert(name).second) {
      names.push_back(name);
    }
  }
  for (auto it = headers->begin(); it != headers->end(); ++it) {
    if (seen.insert(it.key()).second) {
      names.push_back(it.key());
    }
  }
  for (const std::string& name : names) {
    const std::string field = "content.headers." + Clip(name);
    if (!IsFieldName(name)) {
      return Fail(error, 400, field, "not a header field name (printable ASCII but ':')");
    }
    if (name.size() > kMaxHeaderName) {
      return Fail(error, 400, field,
                  "a header name longer than " + std::to_string(kMaxHeaderName) + " octets");
    }
    if (IsGenerated(name)) {
      return Fail(error, 400, field, "set by the builder: use content.from, subject, ...");
    }
    const Json& value = (*headers)[name];
    if (!value.is_string()) {
      return Fail(error, 400, field, "must be a string");
    }
    b->headers.emplace_back();
    if (!Compile(value.get<std::string>(), field, false, &b->headers.back(), error)) {
      return false;
    }
    b->header_names.push_back(name);
  }
  return true;
}

bool ParseRecipient(const Json& j, size_t i, Recipient* r, Error* error) {
  const std::string at = Index("recipients", i);
  if (!j.is_object()) {
    return Fail(error, 400, at, "must be an object {\"email\", \"name\", \"substitutions\"}");
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() != "email" && it.key() != "name" && it.key() != "substitutions") {
      return Fail(error, 400, at + "." + Clip(it.key()), "unknown field");
    }
  }
  const auto email = j.find("email");
  if (email == j.end()) {
    return Fail(error, 400, at + ".email", "required");
  }
  if (!email->is_string()) {
    return Fail(error, 400, at + ".email", "must be a string");
  }
  r->email = email->get<std::string>();
  std::string why;
  if (!CheckAddress(r->email, &why)) {
    return Fail(error, 400, at + ".email", why);
  }
  if (const auto name = j.find("name"); name != j.end()) {
    if (!name->is_string()) {
      return Fail(error, 400, at + ".name", "must be a string");
    }
    r->name = name->get<std::string>();
    if (!CheckDisplayName(*r->name, &why)) {
      return Fail(error, 400, at + ".name", why);
    }
  }
  const auto subs = j.find("substitutions");
  if (!ParseSubstitutions(subs == j.end() ? nullptr : &*subs, at + ".substitutions", &r->data,
                          error)) {
    return false;
  }
  if (r->data.get("email") == nullptr) {
    r->data.set("email", Data(r->email));
  }
  if (r->name && r->data.get("name") == nullptr) {
    r->data.set("name", Data(*r->name));
  }
  return true;
}

// A rendered header value must stay one field (no CR or LF: header injection) of text (no
// other control but HTAB, RFC 5322 §3.2.5, §3.6.5).
bool CheckHeaderValue(std::string_view value, const std::string& field, Error* error) {
  if (value.find_first_of("\r\n") != std::string_view::npos) {
    return Fail(error, 400, field, "holds CR or LF once rendered (header injection)");
  }
  if (std::any_of(value.begin(), value.end(), [](char c) { return c != '\t' && IsControl(c); })) {
    return Fail(error, 400, field, "holds a control octet once rendered");
  }
  return true;
}

// The header section of a whole message (up to its first empty line; all of it when there is
// none): each line is a field "name:" (RFC 5322 §2.2, §3.6.8) or folded onto the one before
// (it starts with a blank, §2.2.3). Notes whether Date: and Message-ID: are there.
bool CheckHeaderSection(std::string_view m, bool* has_date, bool* has_id, std::string* why) {
  size_t line = 1;
  while (!m.empty()) {
    const size_t crlf = m.find("\r\n");  // m ends in CRLF
    const std::string_view l = m.substr(0, crlf);
    m.remove_prefix(crlf + 2);
    if (l.empty()) {
      return true;
    }
    if (IsWsp(l.front())) {
      if (line == 1) {
        *why = "the message starts with a folded line";
        return false;
      }
    } else {
      const size_t colon = l.find(':');
      std::string_view name = l.substr(0, colon);
      while (!name.empty() && IsWsp(name.back())) {  // obs-ftext WSP ":" (RFC 5322 §4.5.8)
        name.remove_suffix(1);
      }
      if (colon == std::string_view::npos || !IsFieldName(name)) {
        *why = "line " + std::to_string(line) +
               " of the header section is not a header field: " + Quoted(l);
        return false;
      }
      *has_date = *has_date || smtp::EqualsNoCase(name, "Date");
      *has_id = *has_id || smtp::EqualsNoCase(name, "Message-ID");
    }
    ++line;
  }
  return true;
}

bool WholeMessage(const std::string& rendered, const std::string& date, const std::string& id,
                  std::string* out, Error* error) {
  std::string m = NormalizeCrlf(rendered);
  if (m.empty()) {
    return Fail(error, 400, "content", "the message is empty");
  }
  if (m.find('\0') != std::string::npos) {
    return Fail(error, 400, "content", "the message holds NUL");
  }
  if (!EndsWithCrlf(m)) {
    m += "\r\n";
  }
  if (const size_t line = LongLine(m); line != 0) {
    return Fail(error, 400, "content",
                "line " + std::to_string(line) + " is longer than 998 octets (RFC 5322 §2.1.1)");
  }
  bool has_date = false;
  bool has_id = false;
  std::string why;
  if (!CheckHeaderSection(m, &has_date, &has_id, &why)) {
    return Fail(error, 400, "content", why);
  }
  out->clear();
  if (!has_date) {
    *out += "Date: " + date + "\r\n";
  }
  if (!has_id) {
    *out += "Message-ID: " + id + "\r\n";
  }
  *out += m;
  return true;
}

// One text part's header fields and quoted-printable text.
std::string PartHeaders(bool html) {
  return std::string("Content-Type: text/") + (html ? "html" : "plain") +
         "; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n";
}

bool BuilderMessage(const Builder& b, const Recipient& r, const Data& top, size_t index,
                    const std::string& date, const std::string& id, std::string* out,
                    Error* error) {
  std::string& m = *out;
  m.clear();
  AddressHeader("From", b.from, &m);
  if (b.reply_to) {
    AddressHeader("Reply-To", *b.reply_to, &m);
  }
  AddressHeader("To", Mailbox{r.email, r.name.value_or("")}, &m);
  std::string value;
  if (b.subject) {
    if (!Render(*b.subject, top, r.data, index, &value, error) ||
        !CheckHeaderValue(value, b.subject->field, error)) {
      return false;
    }
    // Subject is unstructured (RFC 5322 §3.6.5): encoded-words fit it whole.
    const bool encode = smtp::HasNonAscii(value) || value.find("=?") != std::string::npos;
    if (encode || !FoldHeader("Subject", value, &m)) {
      FoldHeader("Subject", EncodeWords(value), &m);
    }
  }
  m += "Date: " + date + "\r\n";
  m += "Message-ID: " + id + "\r\n";
  m += "MIME-Version: 1.0\r\n";
  for (size_t i = 0; i < b.headers.size(); ++i) {
    const Template& t = b.headers[i];
    if (!Render(t, top, r.data, index, &value, error) || !CheckHeaderValue(value, t.field, error)) {
      return false;
    }
    const std::string written = smtp::HasNonAscii(value) ? EncodeWords(value) : value;
    if (!FoldHeader(b.header_names[i], written, &m)) {
      return Fail(error, 400, t.field, "a line over 998 octets, with no blank to fold at");
    }
  }
  std::string text;
  std::string html;
  if (b.text && !Render(*b.text, top, r.data, index, &text, error)) {
    return false;
  }
  if (b.html && !Render(*b.html, top, r.data, index, &html, error)) {
    return false;
  }
  text = QuotedPrintable(NormalizeCrlf(text));
  html = QuotedPrintable(NormalizeCrlf(html));
  if (!b.text || !b.html) {
    std::string& body = b.text ? text : html;
    m += PartHeaders(b.html.has_value());
    m += "\r\n";
    m += body;
    if (!EndsWithCrlf(body)) {
      m += "\r\n";
    }
    return true;
  }
  // multipart/alternative (RFC 2046 §5.1.4), plain first. Quoted-printable never holds "=_",
  // so the first boundary fits; the loop only proves it (§5.1.1: not in any part).
  std::string boundary;
  for (size_t n = 0;; ++n) {
    boundary = "=_spate_alt_" + std::to_string(n);
    if (text.find(boundary) == std::string::npos && html.find(boundary) == std::string::npos) {
      break;
    }
  }
  m += "Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n\r\n";
  m += "--" + boundary + "\r\n" + PartHeaders(false) + "\r\n" + text + "\r\n";
  m += "--" + boundary + "\r\n" + PartHeaders(true) + "\r\n" + html + "\r\n";
  m += "--" + boundary + "--\r\n";
  return true;
}

bool BuildRequest(std::string_view body, const Limits& limits, const Context& context, Request* out,
                  Error* error) {
  Survey survey;
  std::string why;
  if (!survey.Run(body, &why)) {
    return Fail(error, 400, "body", why);
  }
  const Json root = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return Fail(error, 400, "body", "malformed JSON");  // the survey would have said why
  }
  if (!root.is_object()) {
    return Fail(error, 400, "body", "the body must be a JSON object");
  }
  for (auto it = root.begin(); it != root.end(); ++it) {
    static constexpr std::string_view kKeys[] = {
        "envelope_sender",     "content",      "recipients", "substitutions", "deferred_spool",
        "deferred_generation", "trace_headers"};
    if (std::find(std::begin(kKeys), std::end(kKeys), it.key()) == std::end(kKeys)) {
      return Fail(error, 400, it.key().empty() ? "\"\"" : Clip(it.key()), "unknown field");
    }
  }
  Request request;
  // envelope_sender
  const auto sender = root.find("envelope_sender");
  if (sender == root.end()) {
    return Fail(error, 400, "envelope_sender", "required");
  }
  if (!sender->is_string()) {
    return Fail(error, 400, "envelope_sender", "must be a string");
  }
  request.envelope_sender = sender->get<std::string>();
  if (!CheckAddress(request.envelope_sender, &why)) {
    return Fail(error, 400, "envelope_sender", why);
  }
  // recipients: their number now, each one below
  const auto recipients = root.find("recipients");
  if (recipients == root.end()) {
    return Fail(error, 400, "recipients", "required");
  }
  if (!recipients->is_array() || recipients->empty()) {
    return Fail(error, 400, "recipients", "must be a non-empty array");
  }
  if (limits.max_recipients != 0 && recipients->size() > limits.max_recipients) {
    return Fail(error, 413, "recipients",
                std::to_string(recipients->size()) + " recipients, more than the limit of " +
                    std::to_string(limits.max_recipients));
  }
  // substitutions
  const auto subs = root.find("substitutions");
  Data top;
  if (!ParseSubstitutions(subs == root.end() ? nullptr : &*subs, "substitutions", &top, error)) {
    return false;
  }
  // content
  const auto content = root.find("content");
  if (content == root.end()) {
    return Fail(error, 400, "content", "required");
  }
  std::optional<Template> whole;
  std::optional<Builder> builder;
  if (content->is_string()) {
    whole.emplace();
    if (!Compile(content->get<std::string>(), "content", false, &*whole, error)) {
      return false;
    }
  } else if (content->is_object()) {
    builder.emplace();
    if (!ParseBuilder(*content, survey.header_names(), &*builder, error)) {
      return false;
    }
  } else {
    return Fail(error, 400, "content", "must be a message (a string) or a builder (an object)");
  }
  // The messages.
  const int64_t now_ms = std::clamp<int64_t>(context.now_ms, 0, 253402300799999);  // to 9999
  const std::string date =
      smtp::FormatDate(std::chrono::system_clock::time_point(std::chrono::milliseconds(now_ms)));
  const bool sender_utf8 = smtp::HasNonAscii(request.envelope_sender);
  const bool builder_utf8 =
      builder && (smtp::HasNonAscii(builder->from.email) ||
                  (builder->reply_to && smtp::HasNonAscii(builder->reply_to->email)));
  size_t total = 0;
  request.messages.reserve(recipients->size());
  for (size_t i = 0; i < recipients->size(); ++i) {
    Recipient r;
    if (!ParseRecipient((*recipients)[i], i, &r, error)) {
      return false;
    }
    const std::string id =
        "<" + context.message_id_base + "." + std::to_string(i) + "@" + context.hostname + ">";
    Message message;
    if (whole) {
      std::string rendered;
      if (!Render(*whole, top, r.data, i, &rendered, error) ||
          !WholeMessage(rendered, date, id, &message.data, error)) {
        return false;
      }
    } else if (!BuilderMessage(*builder, r, top, i, date, id, &message.data, error)) {
      return false;
    }
    if (limits.max_message_bytes != 0 && message.data.size() > limits.max_message_bytes) {
      return Fail(error, 413, Index("recipients", i),
                  "the message is " + std::to_string(message.data.size()) +
                      " octets, more than the limit of " +
                      std::to_string(limits.max_message_bytes));
    }
    total += message.data.size();
    if (limits.max_total_bytes != 0 && total > limits.max_total_bytes) {
      return Fail(
          error, 413, "recipients",
          "the messages add up to more than " + std::to_string(limits.max_total_bytes) + " octets");
    }
    message.body_8bit = smtp::HasNonAscii(message.data);
    message.smtputf8 = sender_utf8 || builder_utf8 || smtp::HasNonAscii(r.email);
    message.recipient = std::move(r.email);
    request.messages.push_back(std::move(message));
  }
  *out = std::move(request);
  return true;
}

}  // namespace

bool Build(std::string_view json, const Limits& limits, const Context& context, Request* out,
           Error* error) {
  try {
    return BuildRequest(json, limits, context, out, error);
  } catch (const std::bad_alloc&) {
    try {
      Fail(error, 500, "body", "out of memory");
    } catch (...) {
    }
  } catch (...) {
    try {
      Fail(error, 500, "body", "internal error");
    } catch (...) {
    }
  }
  return false;
}

}  // namespace spate::inject
