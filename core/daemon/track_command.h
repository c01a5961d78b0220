// core/daemon/track_command.h
//
// `spate track ID`: what became of each recipient of one message, by its queue id (the one in
// "250 2.0.0 Ok: queued as ID"). Two sources: the spool ([spool] path, opened read-only, so it
// works beside a running spate) says who is still queued, deferred until when; the accounting
// records ([log] records, the live file and its rotated ones, .zst included) say what happened
// at each attempt and how those that left the spool ended.
//
//   spate track ID [--config FILE] [--spool DIR] [--records FILE] [--json]
//
// Prints one line per recipient: "ADDRESS STATUS ..." where STATUS is delivered, bounced,
// expired, deferred (with its next attempt) or queued (not tried yet); --json prints one JSON
// object instead (id, sender, received, campaign, recipients: [{recipient, status, attempts,
// next_attempt, reply, class, time, events: [...]}]). Exit status: 0 found; 1 no such message
// in the spool or the records; 2 usage or configuration error.
// Threading: the main thread of a short-lived process; blocks on the disk.
#pragma once

#include <optional>
#include <string>

#include "queue/spool.h"

#include <nlohmann/json.hpp>

namespace spate::daemon {

// What --json prints, for the admin API (`spate ctl message`): nullopt when the message is in
// neither source (*error says so). Blocks on the disk: never on a reactor.
std::optional<nlohmann::json> TrackMessage(const std::string& spool, const std::string& records,
                                           queue::MessageId id, std::string* error);

// argv[0] is "track".
int TrackCommand(int argc, char** argv);

}  // namespace spate::daemon
