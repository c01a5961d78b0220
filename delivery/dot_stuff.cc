// delivery/dot_stuff.cc
#include "delivery/dot_stuff.h"

#include <cstring>

namespace spate::delivery {

void AppendDotStuffed(std::string& out, std::string_view body) {
  // Room for the body, the CRLF and the marker, plus a little for stuffed dots; more dots
  // than that only cost the string's geometric growth.
  out.reserve(out.size() + body.size() + body.size() / 256 + 8);
  const char* run = body.data();  // start of the bytes not yet appended
  const char* const end = body.data() + body.size();
  if (!body.empty() && body.front() == '.') {
    out.push_back('.');
  }
  const char* p = run;
  while (p < end) {
    const auto* lf = static_cast<const char*>(std::memchr(p, '\n', static_cast<size_t>(end - p)));
    if (lf == nullptr) {
      break;
    }
    p = lf + 1;
    if (p < end && *p == '.') {
      // §4.5.2: "If the first character is a period, one additional period is inserted".
      out.append(run, p);
      out.push_back('.');
      run = p;
    }
  }
  out.append(run, end);
  if (!body.empty() && !body.ends_with("\r\n")) {
    out.append("\r\n");
  }
  out.append(".\r\n");  // §4.1.1.4: the data ends with <CRLF>.<CRLF>
}

}  // namespace spate::delivery
