// delivery/options.h
//
// What the delivery engine of one shard is told: the daemon maps [delivery] onto this (routes
// go to delivery/routing.h). Defaults are the shipped configuration's.
// Threading: read-only once the engine runs.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "core/clock.h"
#include "delivery/bounce_class.h"

namespace spate::delivery {

// Outbound STARTTLS (RFC 3207), per destination domain.
enum class TlsMode : uint8_t {
  kOff,            // never STARTTLS
  kOpportunistic,  // STARTTLS when offered, certificate not checked (Postfix "may"); a failed
                   // handshake is retried once in plaintext and the site is remembered as broken
  kRequired,       // TLS or defer, never plaintext; certificate not checked (Postfix "encrypt")
  kVerify,         // as required, and the chain must verify to a trusted root and name the MX
                   // host (SNI sent) (Postfix "secure")
};
std::string_view TlsModeName(TlsMode mode);  // "off", "opportunistic", "required", "verify"

struct Options {
  std::string helo_name = "localhost";  // sent in EHLO/HELO
  std::string hostname = "localhost";   // Reporting-MTA and MAILER-DAEMON@ of the DSNs we send
  // RFC 3464 DSNs to senders ([delivery] dsn): of a recipient that failed for good or expired,
  // and, when its NOTIFY asks, of one relayed or still deferred after delay_warning (0: no
  // delay notices; Postfix's delay_warning_time, which is off by default there).
  bool dsn = true;
  Seconds delay_warning{4 * 3600};
  // Every failure gets a bounce class from these rules ([delivery] bounce_rules); null: the
  // built-in ones. A hard bounce of a class in suppress_classes (a bit per BounceClass;
  // [suppression] classes) puts the recipient on the suppression list.
  const Classifier* classifier = nullptr;
  uint32_t suppress_classes = (1u << static_cast<unsigned>(BounceClass::kInvalidRecipient)) |
                              (1u << static_cast<unsigned>(BounceClass::kBadDomain));
  // Per destination: connections open at once, messages over one connection before QUIT,
  // recipients per transaction (RFC 5321 §4.5.3.1.8 asks servers to take at least 100).
  unsigned max_connections = 16;
  unsigned max_messages_per_connection = 1000;
  // With PIPELINING, the next transaction's MAIL/RCPT/DATA go right behind the end of data
  // (RFC 2920 §3.1): one round trip per message on a reused connection, not two.
  bool pipeline_next = true;
  unsigned max_recipients_per_transaction = 100;
  Seconds connect_timeout{30};
  Seconds reply_timeout{300};  // per command
  // RFC 5321 §4.5.3.2: the server's 220 greeting, and the reply to the end of data, have
  // timeouts of their own (5 and 10 minutes there). A reply the end of data waits for longer
  // than this is a message the server may have taken: cut short, it is sent again.
  Seconds greeting_timeout{300};
  Seconds data_dot_timeout{600};
  // A pooled connection with nothing to send is closed after this; a destination with no queue
  // and no connection is forgotten after it too (memory stays flat in the number of domains).
  Seconds idle_timeout{5};
  // Deferred recipients are retried after retry_base, doubling per attempt up to retry_max,
  // with +-20% jitter.
  Seconds retry_base{60};
  Seconds retry_max{3600};
  // A recipient still deferred this long after its message was accepted expires: it fails
  // with its last reply (RFC 3463 X.4.7, delivery time expired) instead of another retry.
  // 0: never. Postfix's maximal_queue_lifetime is 5 days too.
  Seconds max_age{5 * 86400};
  // Bodies a site reads from the spool ahead of the connections that will send them.
  unsigned max_loaded_bodies = 64;
  // Bodies of fresh jobs the shard's sites keep in memory at once, in octets ([delivery]
  // max_body_memory, divided among the shards): a fresh job past it lets go of its body and
  // reads it again when a connection is ready for it. One budget for the shard, not one per
  // site, so a site of a hundred domains keeps as many as a hundred sites of one.
  uint64_t max_body_bytes = 64ull << 20;
  bool log_deliveries = true;  // one log line per recipient outcome
  // [delivery] tls, and [tls_policy]: lower-case domain -> mode, decided per domain before
  // the domains are rolled up into sites (a site is one MX host set and one mode).
  TlsMode tls = TlsMode::kOpportunistic;
  std::map<std::string, TlsMode, std::less<>> tls_policy;
  Seconds tls_handshake_timeout{30};
  // After a failed opportunistic handshake the site goes in plaintext for this long.
  Seconds tls_broken_hold{3600};

  TlsMode TlsFor(std::string_view domain) const {
    auto it = tls_policy.find(domain);
    return it != tls_policy.end() ? it->second : tls;
  }
};

}  // namespace spate::delivery
