#include "core/smtp/header.h"

#include "core/smtp/ascii.h"

namespace spate::smtp {

std::string HeaderValue(std::string_view message, std::string_view name, size_t max_scan) {
  std::string_view rest = message.substr(0, max_scan);
  std::string value;
  bool in_field = false;
  while (!rest.empty()) {
    const size_t eol = rest.find('\n');
    std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (line.empty())
      break;  // the end of the header section
    if (line.front() == ' ' || line.front() == '\t') {
      if (in_field)
        value.append(line);  // a folded continuation: unfolding keeps its whitespace
      continue;
    }
    if (in_field)
      break;  // the next field: the first one named so is the one
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos)
      continue;
    std::string_view field = line.substr(0, colon);
    while (!field.empty() && (field.back() == ' ' || field.back() == '\t'))
      field.remove_suffix(1);  // RFC 5322 §4.5.3 (obsolete): space before the colon
    if (EqualsNoCase(field, name)) {
      in_field = true;
      value.assign(line.substr(colon + 1));
    }
  }
  for (char& c : value) {
    if (c == '\r')
      c = ' ';  // a bare CR inside a line is no line end: never part of a value
  }
  const size_t first = value.find_first_not_of(" \t");
  if (first == std::string::npos)
    return {};
  const size_t last = value.find_last_not_of(" \t");
  return value.substr(first, last - first + 1);
}

}  // namespace spate::smtp
