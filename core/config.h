// core/config.h
//
// The daemon's configuration: a TOML file (toml++), or the embedded default, which is
// deploy/spate.toml compiled in. Unknown keys and bad values are errors with a message that
// names the key, so a typo never silently runs with a default.
// Threading: parsed once at start-up (may block: reads the file, resolves route host names);
// then read-only and shared by every thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <sys/socket.h>

#include "core/result.h"

namespace spate {

using Seconds = std::chrono::duration<double>;

struct Endpoint {
  std::string text;  // as configured, "host:port"
  sockaddr_storage addr{};
  socklen_t len = 0;
};

struct Config {
  // [server]: the submission listener (one SO_REUSEPORT socket per shard).
  Endpoint listen;
  std::string hostname;         // greeting and Received: name; default: the host name
  size_t max_message_size = 0;  // octets; SIZE (RFC 1870)
  size_t max_recipients = 0;    // per message
  Seconds command_timeout{};    // RFC 5321 §4.5.3.2.7
  // [spool]
  std::string spool_path;
  bool spool_sync = true;  // fsync each commit batch before the 250
  // [metrics]
  Endpoint metrics_listen;
  size_t metrics_max_domains = 0;  // per shard; further domains are counted as "other"
  // [shards]
  unsigned shards = 0;  // 0: one per core
  // [delivery]
  std::string helo_name;         // default: hostname
  std::string smarthost_text;    // "host:port" or empty
  Endpoint smarthost;            // valid when smarthost_text is not empty
  unsigned max_connections = 0;  // per destination
  unsigned max_messages_per_connection = 0;
  unsigned max_recipients_per_transaction = 0;
  Seconds connect_timeout{};
  Seconds reply_timeout{};  // per command, client side
  Seconds idle_timeout{};   // an idle pooled connection is closed after this
  Seconds retry_base{};     // first retry delay; doubles per attempt
  Seconds retry_max{};      // cap of the retry delay
  // [routes]: domain (lower case) -> where its mail goes.
  std::map<std::string, Endpoint> routes;
  // [log]
  std::string log_level;
  bool log_deliveries = true;  // one line per delivery outcome
};

// Parses `text` (TOML). On failure, `error` says what and where.
Result<Config> ParseConfig(std::string_view text, std::string* error);
Result<Config> LoadConfigFile(const std::string& path, std::string* error);

// The embedded default configuration (deploy/spate.toml), as text.
std::string_view DefaultConfigText();

// "250ms", "5s", "2m", "1h", or a bare number of seconds.
Result<Seconds> ParseDuration(std::string_view text);

}  // namespace spate
