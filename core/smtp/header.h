// core/smtp/header.h
//
// Reading one field of a message's header section (RFC 5322 §2.2): the first field of a given
// name, its folded lines joined (§2.2.3, unfolding) and the whitespace around it trimmed. The
// message is the canonical text the spool keeps (CRLF line ends); the header section ends at the
// first empty line. Bounded work: at most the first `max_scan` octets are looked at.
// Threading: pure.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace spate::smtp {

// The value of the first header field named `name` (case-insensitive), or "" when there is none.
std::string HeaderValue(std::string_view message, std::string_view name,
                        size_t max_scan = 256 * 1024);

}  // namespace spate::smtp
