// core/smtp/reply_parser.cc
#include "core/smtp/reply_parser.h"

#include <cstring>
#include <utility>

#include "core/smtp/errc.h"

namespace spate::smtp {
namespace {

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

// Length of a run of 1 to 3 digits at `pos`, or 0.
size_t DigitRun(std::string_view s, size_t pos) {
  size_t n = 0;
  while (pos + n < s.size() && n < 4 && IsDigit(s[pos + n])) {
    ++n;
  }
  return n <= 3 ? n : 0;
}

// If `text` starts with an enhanced status code (RFC 3463 §2: class "." subject "." detail,
// subject and detail of 1 to 3 digits) whose class is `cls` (RFC 2034 §4: the class matches
// the first digit of the reply code), followed by SP or the end of the line, returns the
// length of the code; else 0.
size_t EnhancedCodeLength(std::string_view text, char cls) {
  if (text.size() < 5 || text[0] != cls || text[1] != '.') {
    return 0;
  }
  const size_t subject = DigitRun(text, 2);
  if (subject == 0 || 2 + subject >= text.size() || text[2 + subject] != '.') {
    return 0;
  }
  const size_t detail_at = 3 + subject;
  const size_t detail = DigitRun(text, detail_at);
  const size_t end = detail_at + detail;
  if (detail == 0 || (end < text.size() && text[end] != ' ')) {
    return 0;
  }
  return end;
}

// Strips the enhanced code found by EnhancedCodeLength and the one SP after it.
std::string_view StripEnhanced(std::string_view text, size_t len) {
  text.remove_prefix(len);
  if (!text.empty() && text.front() == ' ') {
    text.remove_prefix(1);
  }
  return text;
}

}  // namespace

ReplyParser::ReplyParser(Limits limits) : limits_(limits) {}

Unexpected ReplyParser::Fail(std::error_code ec) {
  error_ = ec;
  line_.clear();
  line_.shrink_to_fit();
  return Unexpected{ec};
}

Result<size_t> ReplyParser::Feed(std::string_view in) {
  if (error_) {
    return Unexpected{error_};
  }
  size_t used = 0;
  while (!done_ && used < in.size()) {
    const char* start = in.data() + used;
    const size_t avail = in.size() - used;
    const auto* lf = static_cast<const char*>(std::memchr(start, '\n', avail));
    if (lf == nullptr) {
      // A partial line: keep it. One more byte is allowed for a CR whose LF is still to come.
      if (line_.size() + avail > limits_.max_line_bytes + 1) {
        return Fail(Errc::kReplyTooLong);
      }
      line_.append(start, avail);
      used = in.size();
      break;
    }
    const size_t n = static_cast<size_t>(lf - start);
    used += n + 1;
    std::string_view line;
    if (line_.empty()) {
      line = std::string_view(start, n);  // the whole line is in `in`: no copy
    } else {
      line_.append(start, n);
      line = line_;
    }
    // RFC 5321 §2.3.8: lines end in CRLF; a bare LF is tolerated.
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.size() > limits_.max_line_bytes) {
      return Fail(Errc::kReplyTooLong);
    }
    const std::error_code ec = OnLine(line);
    line_.clear();
    if (ec) {
      return Fail(ec);
    }
  }
  return used;
}

// RFC 5321 §4.2: Reply-line = *( Reply-code "-" [ textstring ] CRLF )
//                             Reply-code [ SP textstring ] CRLF
// Every line of a multi-line reply carries the same code (§4.2.1).
std::error_code ReplyParser::OnLine(std::string_view line) {
  // §4.2: the first digit is 2 to 5 (there are no 1yz replies in SMTP).
  if (line.size() < 3 || line[0] < '2' || line[0] > '5' || !IsDigit(line[1]) || !IsDigit(line[2])) {
    return Errc::kMalformedReply;
  }
  if (line.size() > 3 && line[3] != ' ' && line[3] != '-') {
    return Errc::kMalformedReply;
  }
  const auto code =
      static_cast<uint16_t>((line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
  const bool last = line.size() == 3 || line[3] == ' ';
  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view();
  if (lines_ + 1 > limits_.max_lines) {
    return Errc::kReplyTooLong;
  }
  if (lines_ == 0) {
    current_ = Reply{};
    current_.code = code;
    // RFC 2034 §4: the enhanced code starts the text of the reply.
    if (const size_t len = EnhancedCodeLength(text, line[0]); len != 0) {
      current_.enhanced.assign(text.substr(0, len));
      text = StripEnhanced(text, len);
    }
  } else {
    if (code != current_.code) {
      return Errc::kMalformedReply;
    }
    // RFC 2034 §4: every line of a multi-line reply repeats the enhanced code.
    if (!current_.enhanced.empty()) {
      if (const size_t len = EnhancedCodeLength(text, line[0]); len != 0) {
        text = StripEnhanced(text, len);
      }
    }
    current_.text.push_back('\n');
  }
  current_.text.append(text);
  ++lines_;
  if (last) {
    lines_ = 0;
    done_ = true;
  }
  return {};
}

std::optional<Reply> ReplyParser::TakeReply() {
  if (!done_) {
    return std::nullopt;
  }
  done_ = false;
  return std::exchange(current_, Reply{});
}

}  // namespace spate::smtp
