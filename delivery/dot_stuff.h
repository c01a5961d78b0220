// delivery/dot_stuff.h
//
// SMTP data transparency for the client side (RFC 5321 §4.5.2): a '.' at the start of a line
// gets a second '.', and the data ends with <CRLF>.<CRLF>.
// Threading: a pure function; any thread. Never blocks.
#pragma once

#include <string>
#include <string_view>

namespace spate::delivery {

// Appends `body` to `out` dot-stuffed, then the end-of-data marker. A line starts at the start
// of `body` and after every LF. A non-empty body that does not end in CRLF gets one, so the
// marker is always on a line of its own; an empty body yields just ".\r\n".
// Scans for LF-dot pairs sixteen octets a step and appends whole runs between them.
void AppendDotStuffed(std::string& out, std::string_view body);

}  // namespace spate::delivery
