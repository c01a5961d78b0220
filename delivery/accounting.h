// delivery/accounting.h
//
// Accounting records: one event for everything that happens to a recipient, as PowerMTA's
// accounting file and KumoMTA's log records have it, written as one JSON object per line
// (`[log] records`, core/journal.h). FormatRecord() makes the line; an Accounting sink takes the
// events (the daemon's writes them to the journal; a test's keeps them).
//
// Types: Reception (accepted and durable), Delivery (2xx), TransientFailure (4xx, to be tried
// again), Bounce (failed for good), Expiration (still deferred at [delivery] max_age: failed),
// AdminBounce (failed by an operator: the admin API's, issue 13; nothing makes one yet),
// Suppressed (refused at RCPT: on the suppression list; its `queued` is when the address went
// on the list, and it has no id: the message was never accepted),
// DSN (a delivery status notification stored for the sender), Automation (a shaping rule
// fired on a site, its duration ended and the site recovers by steps, or it ended: the site is
// back to normal; delivery/adaptive.h).
//
// Fields (absent when unknown or empty): type, id (queue id), sender, recipient, domain, site,
// campaign, size (octets), attempts (this one included), reply {code, enhanced, text}, peer
// {name, address}, tls {version, cipher}, class (bounce class of a failure), queued (when the
// message was accepted) and time (of the event), both unix milliseconds; a DSN also has
// action ("failed", "delayed", "relayed"), recipients (how many it reports) and dsn_id (the
// notice's own queue id, which its Reception and Delivery records carry as their id). An
// Automation record has site, rule (its label, "provider.yahoo:47"), action ("Suspend",
// "Bounce", "SetConfig max_message_rate=1/s"), event ("fired", "recovering", "ended"), reply
// (the one that fired it), until (when its full strength ends) and time, and no sender.
// Threading: FormatRecord is pure; an Accounting's Record() may be called from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/smtp/reply.h"
#include "queue/spool.h"

namespace spate::delivery {

enum class RecordType : uint8_t {
  kReception,
  kDelivery,
  kTransientFailure,
  kBounce,
  kExpiration,
  kAdminBounce,
  kSuppressed,
  kDsn,
  kAutomation,
};
std::string_view RecordTypeName(RecordType t);  // "Reception", "TransientFailure", "DSN", ...

struct Record {
  RecordType type = RecordType::kDelivery;
  queue::MessageId id = 0;
  std::string_view sender;
  std::string_view recipient;
  std::string_view domain;  // the recipient's, lower case
  std::string_view site;
  std::string_view campaign;
  uint64_t size = 0;
  uint32_t attempts = 0;
  const smtp::Reply* reply = nullptr;
  std::string_view peer_name;
  std::string_view peer_address;
  std::string_view mta_sts;  // the destination's MTA-STS policy mode ("enforce", "testing")
  bool dane = false;         // the peer was authenticated by DANE (RFC 7672)
  std::string_view tls_version;
  std::string_view tls_cipher;
  std::string_view bounce_class;
  std::string_view dsn_action;
  uint32_t dsn_recipients = 0;
  queue::MessageId dsn_id = 0;  // the DSN message's own queue id
  std::string_view rule;        // Automation: the rule's label; action goes in dsn_action
  std::string_view rule_event;  // "fired", "recovering", "ended"
  int64_t until_ms = 0;
  int64_t queued_ms = 0;
  int64_t event_ms = 0;
};

// One line of JSON, without its newline.
std::string FormatRecord(const Record& r);

class Accounting {
 public:
  virtual ~Accounting() = default;
  virtual void Write(const Record& record) = 0;
};

}  // namespace spate::delivery
