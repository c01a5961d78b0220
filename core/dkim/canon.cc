// core/dkim/canon.cc
//
// Splitting and canonicalization (RFC 6376 §3.4.2, §3.4.4). One pass over the input each; the
// body is canonicalized into a small buffer that is hashed as it fills, so a large body costs
// no copy.
#include "core/dkim/canon.h"

#include <cstdint>

#include <openssl/base64.h>
#include <openssl/sha.h>

#include "core/smtp/ascii.h"

namespace spate::dkim {
namespace {

constexpr bool IsWsp(char c) {
  return c == ' ' || c == '\t';
}

std::string_view TrimTrailingWsp(std::string_view s) {
  while (!s.empty() && IsWsp(s.back()))
    s.remove_suffix(1);
  return s;
}

// §3.4.4 over `body`, the canonical text handed to `sink` in pieces. Empty lines are not
// written when seen but counted, and written only once a line with content follows: so the
// empty lines at the end are never written, without looking ahead.
template <typename Sink>
void CanonicalizeBody(std::string_view body, Sink& sink) {
  size_t pending_empty = 0;  // empty lines seen since the last line with content
  size_t i = 0;
  const size_t n = body.size();
  while (i < n) {
    bool content = false;  // this line has a non-WSP octet
    bool wsp = false;      // a run of WSP is open (written as one SP if content follows)
    for (; i < n; ++i) {
      const char c = body[i];
      if (c == '\r' && i + 1 < n && body[i + 1] == '\n') {
        i += 2;
        break;
      }
      if (IsWsp(c)) {
        wsp = true;
        continue;
      }
      if (!content) {
        content = true;
        for (; pending_empty > 0; --pending_empty)
          sink.Append("\r\n");
      }
      if (wsp) {
        sink.Append(" ");  // leading WSP too: " C" stays " C" (§3.4.5)
        wsp = false;
      }
      sink.Append(std::string_view(&c, 1));
    }
    // Trailing WSP (an open run) is dropped. A last line without CRLF gets one when it has
    // content; one with none is an empty line like any other.
    if (content)
      sink.Append("\r\n");
    else
      ++pending_empty;
  }
}

struct StringSink {
  std::string* out;
  void Append(std::string_view s) { out->append(s); }
};

// Collects octets into a buffer and hashes it whenever it fills: one SHA256_Update per 16 KiB,
// not per octet.
class HashSink {
 public:
  HashSink() { SHA256_Init(&ctx_); }
  void Append(std::string_view s) {
    if (used_ + s.size() > sizeof buf_)
      Flush();
    if (s.size() > sizeof buf_) {
      SHA256_Update(&ctx_, s.data(), s.size());
      return;
    }
    for (char c : s)
      buf_[used_++] = static_cast<uint8_t>(c);
  }
  void Final(uint8_t digest[SHA256_DIGEST_LENGTH]) {
    Flush();
    SHA256_Final(digest, &ctx_);
  }

 private:
  void Flush() {
    SHA256_Update(&ctx_, buf_, used_);
    used_ = 0;
  }

  SHA256_CTX ctx_;
  uint8_t buf_[16 * 1024];
  size_t used_ = 0;
};

}  // namespace

bool FieldReader::Next(HeaderField* field) {
  const size_t n = message_.size();
  auto line_end = [&](size_t from) {
    const size_t e = message_.find("\r\n", from);
    return e == std::string_view::npos ? n : e;
  };
  while (pos_ < n) {
    size_t end = line_end(pos_);
    if (end == pos_) {  // the empty line: the body follows it
      body_ = message_.substr(pos_ + 2);
      pos_ = n;
      return false;
    }
    const size_t start = pos_;
    pos_ = end == n ? n : end + 2;
    if (IsWsp(message_[start]))
      continue;  // a continuation with no field above it
    const std::string_view line = message_.substr(start, end - start);
    const size_t colon = line.find(':');
    HeaderField f;
    size_t value_start;
    if (colon == std::string_view::npos) {
      f.name = line;
      f.malformed = true;
      value_start = end;
    } else {
      f.name = line.substr(0, colon);
      value_start = start + colon + 1;
    }
    // Its continuation lines (RFC 5322 §2.2.3): the value runs to the last one's end.
    while (pos_ < n && IsWsp(message_[pos_])) {
      end = line_end(pos_);
      pos_ = end == n ? n : end + 2;
    }
    f.value = message_.substr(value_start, end - value_start);
    *field = f;
    return true;
  }
  return false;  // no empty line: all header, no body
}

SplitMessage Split(std::string_view message) {
  SplitMessage out;
  FieldReader reader(message);
  HeaderField f;
  while (reader.Next(&f))
    out.fields.push_back(f);
  out.body = reader.body();
  return out;
}

bool NameIs(const HeaderField& field, std::string_view name) {
  return !field.malformed && smtp::EqualsNoCase(TrimTrailingWsp(field.name), name);
}

void AppendRelaxedHeader(std::string_view name, std::string_view value, std::string* out) {
  out->reserve(out->size() + name.size() + value.size() + 1);
  for (char c : TrimTrailingWsp(name))
    out->push_back(smtp::AsciiLower(c));
  out->push_back(':');
  bool any = false;  // a value octet has been written: WSP before the first one is dropped
  bool wsp = false;
  const size_t n = value.size();
  for (size_t i = 0; i < n; ++i) {
    const char c = value[i];
    if (c == '\r' && i + 1 < n && value[i + 1] == '\n') {
      ++i;  // unfolding; the WSP on either side of the fold joins one run
      continue;
    }
    if (IsWsp(c)) {
      wsp = true;
      continue;
    }
    if (wsp && any)
      out->push_back(' ');
    wsp = false;
    any = true;
    out->push_back(c);
  }
}

std::string RelaxedHeader(std::string_view name, std::string_view value) {
  std::string out;
  AppendRelaxedHeader(name, value, &out);
  return out;
}

std::string RelaxedBody(std::string_view body) {
  std::string out;
  StringSink sink{&out};
  CanonicalizeBody(body, sink);
  return out;
}

std::string RelaxedBodyHash(std::string_view body) {
  HashSink sink;
  CanonicalizeBody(body, sink);
  uint8_t digest[SHA256_DIGEST_LENGTH];
  sink.Final(digest);
  return Base64(digest, sizeof digest);
}

std::string Base64(const unsigned char* data, size_t size) {
  size_t len = 0;
  if (!EVP_EncodedLength(&len, size))
    return {};  // only past SIZE_MAX / 4 * 3: nothing DKIM encodes
  std::string out(len, '\0');
  out.resize(EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()), data, size));
  return out;
}

}  // namespace spate::dkim
