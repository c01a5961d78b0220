// core/smtp/reply.cc
#include "core/smtp/reply.h"

#include <string_view>

namespace spate::smtp {

std::string Reply::ToString() const {
  std::string out = std::to_string(code);
  if (!enhanced.empty()) {
    out += ' ';
    out += enhanced;
  }
  const std::string_view first_line = std::string_view(text).substr(0, text.find('\n'));
  if (!first_line.empty()) {
    out += ' ';
    out.append(first_line);
  }
  return out;
}

}  // namespace spate::smtp
