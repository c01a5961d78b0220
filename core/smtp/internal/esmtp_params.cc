// core/smtp/internal/esmtp_params.cc
#include "core/smtp/internal/esmtp_params.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/smtp/ascii.h"

namespace spate::smtp::internal {
namespace {

constexpr size_t kMaxEnvid = 100;  // RFC 3461 §4.4
constexpr size_t kMaxOrcpt = 500;  // RFC 3461 §4.2, the whole value

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// RFC 6710 §3: priority-value = [priority-sign] priority-number, the sign "+" or "-" and the
// number one DIGIT: -9 to 9, so "10", "--1" and "+" are malformed, not out of range.
bool ParsePriority(std::string_view s, int8_t* priority) {
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.size() != 1 || s[0] < '0' || s[0] > '9')
    return false;
  const int value = s[0] - '0';
  *priority = static_cast<int8_t>(negative ? -value : value);
  return true;
}

}  // namespace

bool ParseParams(std::string_view rest, std::vector<Param>* params) {
  while (!rest.empty()) {
    if (rest[0] != ' ') {
      return false;
    }
    while (!rest.empty() && rest[0] == ' ') {
      rest.remove_prefix(1);
    }
    if (rest.empty()) {
      break;
    }
    const size_t end = std::min(rest.find(' '), rest.size());
    const std::string_view item = rest.substr(0, end);
    rest.remove_prefix(end);
    Param param;
    const size_t eq = item.find('=');
    param.keyword = item.substr(0, eq);
    if (param.keyword.empty() || !IsAsciiAlnum(param.keyword[0])) {
      return false;
    }
    for (char c : param.keyword) {
      if (!IsAsciiAlnum(c) && c != '-') {
        return false;
      }
    }
    if (eq != std::string_view::npos) {
      param.has_value = true;
      param.value = item.substr(eq + 1);
      if (param.value.empty()) {
        return false;
      }
      for (char c : param.value) {
        if (c < 33 || c > 126 || c == '=') {
          return false;
        }
      }
    }
    params->push_back(param);
  }
  return true;
}

bool ParseSize(std::string_view s, uint64_t* size) {
  if (s.empty() || s.size() > 20) {
    return false;
  }
  uint64_t value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    value = value > (UINT64_MAX - digit) / 10 ? UINT64_MAX : value * 10 + digit;
  }
  *size = value;
  return true;
}

bool DecodeXtext(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      if (i + 2 >= in.size()) {
        return false;
      }
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) {
        return false;
      }
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c < 33 || c > 126 || c == '=') {
      return false;
    }
    if (c < 32 || c > 126) {
      return false;
    }
    out->push_back(c);
  }
  return true;
}

std::string_view ParseMailParams(std::string_view rest, bool auth, MailParams* params) {
  std::vector<Param> list;
  if (!ParseParams(rest, &list)) {
    return "501 5.5.4 Bad MAIL parameter syntax";
  }
  bool has_body = false;
  bool has_auth = false;
  bool has_envid = false;
  for (const Param& param : list) {
    if (EqualsNoCase(param.keyword, "SIZE")) {  // RFC 1870 §3
      if (params->has_size || !param.has_value || !ParseSize(param.value, &params->size)) {
        return "501 5.5.4 Bad SIZE parameter";
      }
      params->has_size = true;
    } else if (EqualsNoCase(param.keyword, "BODY")) {  // RFC 6152 §2
      if (has_body || !param.has_value ||
          !(EqualsNoCase(param.value, "7BIT") || EqualsNoCase(param.value, "8BITMIME"))) {
        return "501 5.5.4 Bad BODY parameter";
      }
      has_body = true;
      params->body_8bit = EqualsNoCase(param.value, "8BITMIME");
    } else if (EqualsNoCase(param.keyword, "SMTPUTF8")) {  // RFC 6531 §3.4: no value
      // A repeat says nothing new and is accepted, as Postfix does: Python's smtplib sends it
      // twice when the caller asks for SMTPUTF8 and the addresses need it anyway.
      if (param.has_value) {
        return "501 5.5.4 Bad SMTPUTF8 parameter";
      }
      params->smtputf8 = true;
    } else if (EqualsNoCase(param.keyword, "RET")) {  // RFC 3461 §4.3, §4.5
      const bool full = EqualsNoCase(param.value, "FULL");
      if (params->ret != ReceivedMessage::Ret::kUnset || !param.has_value ||
          !(full || EqualsNoCase(param.value, "HDRS"))) {
        return "501 5.5.4 Bad RET parameter";
      }
      params->ret = full ? ReceivedMessage::Ret::kFull : ReceivedMessage::Ret::kHdrs;
    } else if (EqualsNoCase(param.keyword, "ENVID")) {  // RFC 3461 §4.4, §4.5
      if (has_envid || !param.has_value || !DecodeXtext(param.value, &params->envid) ||
          params->envid.size() > kMaxEnvid) {
        return "501 5.5.4 Bad ENVID parameter";
      }
      has_envid = true;
    } else if (auth && EqualsNoCase(param.keyword, "AUTH")) {
      // RFC 4954 §5: the identity that submitted the message to the client, "<>" if unknown.
      // Only trusted from a trusted client; this server trusts none, so it is checked and
      // dropped.
      std::string ignored;
      if (has_auth || !param.has_value ||
          !(param.value == "<>" || DecodeXtext(param.value, &ignored))) {
        return "501 5.5.4 Bad AUTH parameter";
      }
      has_auth = true;
    } else if (EqualsNoCase(param.keyword, "MT-PRIORITY")) {
      // RFC 6710 §3; given twice, which one would count is anyone's guess: refused.
      if (params->has_priority || !param.has_value ||
          !ParsePriority(param.value, &params->priority)) {
        return "501 5.5.4 Bad MT-PRIORITY parameter";
      }
      params->has_priority = true;
    } else {
      return "555 5.5.4 Unsupported MAIL parameter";  // RFC 5321 §4.1.1.11
    }
  }
  return "";
}

std::string_view ParseRcptParams(std::string_view rest, DsnRecipient* dsn) {
  std::vector<Param> list;
  if (!ParseParams(rest, &list)) {
    return "501 5.5.4 Bad RCPT parameter syntax";
  }
  bool has_orcpt = false;
  for (const Param& param : list) {
    if (EqualsNoCase(param.keyword, "NOTIFY")) {
      // RFC 3461 §4.1: "NEVER" alone, or a list of SUCCESS, FAILURE, DELAY; §4.5: once.
      bool ok = dsn->notify == 0 && param.has_value;
      std::string_view items = param.value;
      while (ok) {
        const size_t comma = items.find(',');
        const std::string_view item = items.substr(0, comma);
        uint8_t bit = 0;
        if (EqualsNoCase(item, "NEVER")) {
          bit = kNotifyNever;
        } else if (EqualsNoCase(item, "SUCCESS")) {
          bit = kNotifySuccess;
        } else if (EqualsNoCase(item, "FAILURE")) {
          bit = kNotifyFailure;
        } else if (EqualsNoCase(item, "DELAY")) {
          bit = kNotifyDelay;
        }
        ok = bit != 0 && (dsn->notify & bit) == 0;
        dsn->notify |= bit;
        if (comma == std::string_view::npos) {
          break;
        }
        items.remove_prefix(comma + 1);
      }
      if (!ok || ((dsn->notify & kNotifyNever) != 0 && dsn->notify != kNotifyNever)) {
        return "501 5.5.4 Bad NOTIFY parameter";
      }
    } else if (EqualsNoCase(param.keyword, "ORCPT")) {
      // RFC 3461 §4.2: addr-type ";" xtext, addr-type an atom; at most 500 characters.
      const size_t semi = param.value.find(';');
      bool ok = !has_orcpt && param.has_value && param.value.size() <= kMaxOrcpt &&
                semi != std::string_view::npos && semi > 0;
      std::string decoded;
      if (ok) {
        for (char c : param.value.substr(0, semi)) {
          ok = ok && (IsAsciiAlnum(c) ||
                      std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos);
        }
        ok = ok && DecodeXtext(param.value.substr(semi + 1), &decoded);
      }
      if (!ok) {
        return "501 5.5.4 Bad ORCPT parameter";
      }
      dsn->orcpt = std::string(param.value.substr(0, semi + 1)) + decoded;
      has_orcpt = true;
    } else {
      return "555 5.5.4 Unsupported RCPT parameter";  // RFC 5321 §4.1.1.11
    }
  }
  return "";
}

}  // namespace spate::smtp::internal
