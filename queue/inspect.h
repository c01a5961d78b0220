// queue/inspect.h
//
// What the spool on disk holds for one message, read without a running Spool: for `spate
// track` (core/daemon/track_command.h), and later the admin API. The database is opened
// read-only, so it works beside a running spate (it sees what was written when it opened).
// Threading: the caller's; blocks on the disk.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"
#include "queue/spool.h"

namespace spate::queue {

struct SpooledRecipient {
  enum class State : uint8_t {
    kPending,   // not tried yet (no record)
    kDeferred,  // tried, to be tried again at next_attempt_ms
    kDone,      // finished (delivered or failed) while others of its message are pending
  } state = State::kPending;
  uint32_t index = 0;
  std::string address;
  uint16_t attempts = 0;
  int64_t next_attempt_ms = 0;
  bool delay_warned = false;
};

struct SpooledMessage {
  MessageId id = 0;
  std::string mail_from;
  int64_t received_ms = 0;
  uint64_t body_size = 0;
  std::string envid;
  std::string auth_user;
  std::string campaign;
  std::vector<SpooledRecipient> recipients;  // every recipient of the message, by index
};

// Errc::kNotFound when the spool has no such message (never accepted, or every recipient
// finished: then only the accounting records know what became of it) or there is no spool at
// `path`; Errc::kCorruption when its records do not decode.
Result<SpooledMessage> InspectSpoolMessage(const std::string& path, MessageId id,
                                           std::string* error);

// "0005f1c2a3b4c5d6" (FormatId's form; 1 to 16 hex digits) as an id.
Result<MessageId> ParseId(std::string_view text);

}  // namespace spate::queue
