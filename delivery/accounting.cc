#include "delivery/accounting.h"

#include "core/json.h"

namespace spate::delivery {

std::string_view RecordTypeName(RecordType t) {
  switch (t) {
    case RecordType::kReception:
      return "Reception";
    case RecordType::kDelivery:
      return "Delivery";
    case RecordType::kTransientFailure:
      return "TransientFailure";
    case RecordType::kBounce:
      return "Bounce";
    case RecordType::kExpiration:
      return "Expiration";
    case RecordType::kAdminBounce:
      return "AdminBounce";
    case RecordType::kSuppressed:
      return "Suppressed";
    case RecordType::kDsn:
      return "DSN";
    case RecordType::kAutomation:
      return "Automation";
  }
  return "Unknown";
}

namespace {

void Key(std::string& out, std::string_view key) {
  out += out.size() > 1 ? ",\"" : "\"";
  out += key;
  out += "\":";
}

void Text(std::string& out, std::string_view key, std::string_view value) {
  if (value.empty())
    return;
  Key(out, key);
  AppendJsonString(out, value);
}

void Number(std::string& out, std::string_view key, uint64_t value) {
  if (value == 0)
    return;
  Key(out, key);
  AppendJsonNumber(out, value);
}

}  // namespace

std::string FormatRecord(const Record& r) {
  std::string out;
  out.reserve(256 + (r.reply != nullptr ? r.reply->text.size() : 0));
  out += '{';
  Text(out, "type", RecordTypeName(r.type));
  if (r.id != 0)
    Text(out, "id", queue::FormatId(r.id));
  if (r.type != RecordType::kAutomation) {
    Key(out, "sender");  // "" is the null sender: said, not left out
    AppendJsonString(out, r.sender);
  }
  Text(out, "recipient", r.recipient);
  Text(out, "domain", r.domain);
  Text(out, "site", r.site);
  Text(out, "campaign", r.campaign);
  Number(out, "size", r.size);
  Number(out, "attempts", r.attempts);
  if (r.reply != nullptr) {
    Key(out, "reply");
    out += "{\"code\":";
    AppendJsonNumber(out, static_cast<uint64_t>(r.reply->code));
    if (!r.reply->enhanced.empty()) {
      out += ",\"enhanced\":";
      AppendJsonString(out, r.reply->enhanced);
    }
    out += ",\"text\":";
    AppendJsonString(out, r.reply->text);
    out += '}';
  }
  if (!r.peer_name.empty() || !r.peer_address.empty()) {
    Key(out, "peer");
    out += '{';
    const size_t open = out.size();
    if (!r.peer_name.empty()) {
      out += "\"name\":";
      AppendJsonString(out, r.peer_name);
    }
    if (!r.peer_address.empty()) {
      out += out.size() > open ? ",\"address\":" : "\"address\":";
      AppendJsonString(out, r.peer_address);
    }
    out += '}';
  }
  Text(out, "mta_sts", r.mta_sts);
  if (r.dane) {
    Key(out, "dane");
    out += "true";
  }
  if (!r.tls_version.empty()) {
    Key(out, "tls");
    out += "{\"version\":";
    AppendJsonString(out, r.tls_version);
    out += ",\"cipher\":";
    AppendJsonString(out, r.tls_cipher);
    out += '}';
  }
  Text(out, "class", r.bounce_class);
  Text(out, "action", r.dsn_action);
  Text(out, "rule", r.rule);
  Text(out, "event", r.rule_event);
  Number(out, "until", static_cast<uint64_t>(r.until_ms > 0 ? r.until_ms : 0));
  Number(out, "recipients", r.dsn_recipients);
  if (r.dsn_id != 0)
    Text(out, "dsn_id", queue::FormatId(r.dsn_id));
  Number(out, "queued", static_cast<uint64_t>(r.queued_ms > 0 ? r.queued_ms : 0));
  Number(out, "time", static_cast<uint64_t>(r.event_ms > 0 ? r.event_ms : 0));
  out += '}';
  return out;
}

}  // namespace spate::delivery
