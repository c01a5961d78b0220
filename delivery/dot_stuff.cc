// delivery/dot_stuff.cc
#include "delivery/dot_stuff.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace spate::delivery {

namespace {

// The first LF in [p, end) that has a '.' right after it, or null. One vector step tests
// sixteen positions (SSE2 is in every x86-64), instead of a memchr call per line: mail has an
// LF every 80 octets or so, and a line that starts with a dot is rare.
const char* FindLfDot(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i lf = _mm_set1_epi8('\n');
  const __m128i dot = _mm_set1_epi8('.');
  for (; end - p >= 17; p += 16) {
    const __m128i here = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i next = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 1));
    const int mask =
        _mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(here, lf), _mm_cmpeq_epi8(next, dot)));
    if (mask != 0)
      return p + __builtin_ctz(static_cast<unsigned>(mask));
  }
#endif
  for (; end - p >= 2; ++p) {
    if (p[0] == '\n' && p[1] == '.')
      return p;
  }
  return nullptr;
}

}  // namespace

void AppendDotStuffed(std::string& out, std::string_view body) {
  // Room for the body, the CRLF and the marker, plus a little for stuffed dots; more dots
  // than that only cost the string's geometric growth.
  out.reserve(out.size() + body.size() + body.size() / 256 + 8);
  const char* run = body.data();  // start of the bytes not yet appended
  const char* const end = body.data() + body.size();
  if (!body.empty() && body.front() == '.') {
    out.push_back('.');
  }
  for (const char* lf = FindLfDot(run, end); lf != nullptr; lf = FindLfDot(lf + 1, end)) {
    // §4.5.2: "If the first character is a period, one additional period is inserted".
    out.append(run, lf + 1);
    out.push_back('.');
    run = lf + 1;
  }
  out.append(run, end);
  if (!body.empty() && !body.ends_with("\r\n")) {
    out.append("\r\n");
  }
  out.append(".\r\n");  // §4.1.1.4: the data ends with <CRLF>.<CRLF>
}

}  // namespace spate::delivery
