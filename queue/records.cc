#include "queue/records.h"

#include <algorithm>

namespace spate::queue::records {

namespace {

// 1: without campaign; 2: str campaign after auth_user; 3: the same (the campaign may be
// empty) and priority(1) after it. All are read; each message is written in the lowest version
// that holds it (one encoding per record, and a build from before campaigns or priorities still
// reads the spool of messages without them).
constexpr uint8_t kEnvelopeVersion = 3;
constexpr int8_t kMinPriority = -9;  // RFC 6710 §3
constexpr int8_t kMaxPriority = 9;
constexpr uint8_t kSuppressionVersion = 1;
constexpr uint8_t kBodyRefVersion = 1;
constexpr size_t kBodyRefSize = 1 + 4 + 8 + 8 + 4;
constexpr uint8_t kFlag8Bit = 1;
constexpr uint8_t kFlagSmtpUtf8 = 2;
// CF "rcpt" values: 'P' attempts(2) next_attempt_ms(8), 'W' the same once the delay notice
// went out, or 'D'.
constexpr char kRcptDeferred = 'P';
constexpr char kRcptDeferredWarned = 'W';
constexpr char kRcptDone = 'D';

void PutU16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}
void PutU32(std::string& out, uint32_t v) {
  for (int i = 3; i >= 0; --i)
    out.push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i)
    out.push_back(static_cast<char>(v >> (8 * i)));
}
void PutStr(std::string& out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

// Reads big-endian fields from a record; any overrun sets ok=false and yields zeros.
struct Reader {
  std::string_view in;
  bool ok = true;
  uint64_t Num(int bytes) {
    if (in.size() < static_cast<size_t>(bytes)) {
      ok = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i)
      v = (v << 8) | static_cast<unsigned char>(in[i]);
    in.remove_prefix(bytes);
    return v;
  }
  std::string Str() {
    uint64_t n = Num(4);
    if (!ok || in.size() < n) {
      ok = false;
      return {};
    }
    std::string s(in.substr(0, n));
    in.remove_prefix(n);
    return s;
  }
};

}  // namespace

std::string MessageKey(MessageId id) {
  std::string k;
  PutU64(k, id);
  return k;
}

std::optional<MessageId> DecodeMessageKey(std::string_view key) {
  Reader r{key};
  MessageId id = r.Num(8);
  if (!r.ok || !r.in.empty())
    return std::nullopt;
  return id;
}

std::string RcptKey(MessageId id, uint32_t index) {
  std::string k;
  k.reserve(12);
  PutU64(k, id);
  PutU32(k, index);
  return k;
}

std::optional<RcptKeyParts> DecodeRcptKey(std::string_view key) {
  Reader r{key};
  RcptKeyParts p;
  p.id = r.Num(8);
  p.index = static_cast<uint32_t>(r.Num(4));
  if (!r.ok || !r.in.empty())
    return std::nullopt;
  return p;
}

std::string EncodeEnvelope(const NewMessage& m, int64_t received_ms) {
  std::string env;
  env.reserve(53 + m.mail_from.size() + m.envid.size() + m.auth_user.size() + m.campaign.size() +
              m.rcpt_to.size() * 40);
  // Clamped: a record the decoder refuses would stop the next start (Recover fails on it).
  const int8_t priority = std::clamp(m.priority, kMinPriority, kMaxPriority);
  const uint8_t version = priority != 0 ? 3 : m.campaign.empty() ? 1 : 2;
  env.push_back(static_cast<char>(version));
  env.push_back(
      static_cast<char>((m.body_8bit ? kFlag8Bit : 0) | (m.smtputf8 ? kFlagSmtpUtf8 : 0)));
  PutU64(env, static_cast<uint64_t>(received_ms));
  PutU64(env, m.body.size());
  env.push_back(static_cast<char>(m.ret));
  PutStr(env, m.mail_from);
  PutStr(env, m.envid);
  PutStr(env, m.auth_user);
  if (version >= 2)
    PutStr(env, m.campaign);
  if (version >= 3)
    env.push_back(static_cast<char>(priority));
  PutU32(env, static_cast<uint32_t>(m.rcpt_to.size()));
  for (size_t i = 0; i < m.rcpt_to.size(); ++i) {
    PutStr(env, m.rcpt_to[i]);
    const DsnRequest* dsn = i < m.dsn.size() ? &m.dsn[i] : nullptr;
    env.push_back(static_cast<char>(dsn ? dsn->notify : 0));
    PutStr(env, dsn ? std::string_view(dsn->orcpt) : std::string_view());
  }
  return env;
}

bool DecodeEnvelope(std::string_view value, RecoveredMessage* out,
                    std::vector<PendingRecipient>* all) {
  Reader r{value};
  uint8_t version = static_cast<uint8_t>(r.Num(1));
  uint8_t flags = static_cast<uint8_t>(r.Num(1));
  out->received_ms = static_cast<int64_t>(r.Num(8));
  out->body_size = r.Num(8);
  out->ret = static_cast<uint8_t>(r.Num(1));
  out->mail_from = r.Str();
  out->envid = r.Str();
  out->auth_user = r.Str();
  out->campaign = version >= 2 ? r.Str() : std::string();
  out->priority = version >= 3 ? static_cast<int8_t>(r.Num(1)) : 0;
  out->body_8bit = (flags & kFlag8Bit) != 0;
  out->smtputf8 = (flags & kFlagSmtpUtf8) != 0;
  uint32_t n = static_cast<uint32_t>(r.Num(4));
  // Unknown flag bits or RET values are damage, not a newer format (that would bump version);
  // so is a record in a higher version than its message needs, or a priority out of range.
  if (!r.ok || version < 1 || version > kEnvelopeVersion ||
      (version == 2 && out->campaign.empty()) ||
      (version == 3 &&
       (out->priority == 0 || out->priority < kMinPriority || out->priority > kMaxPriority)) ||
      (flags & ~(kFlag8Bit | kFlagSmtpUtf8)) != 0 || out->ret > 2 || n == 0 || n > r.in.size()) {
    return false;  // each recipient takes at least 9 bytes: n is bounded by what is left
  }
  all->clear();
  all->reserve(n);
  for (uint32_t i = 0; i < n && r.ok; ++i) {
    PendingRecipient p;
    p.index = i;
    p.address = r.Str();
    p.dsn.notify = static_cast<uint8_t>(r.Num(1));
    p.dsn.orcpt = r.Str();
    if (p.dsn.notify > 15)
      return false;  // NEVER, SUCCESS, FAILURE, DELAY: four bits
    all->push_back(std::move(p));
  }
  return r.ok && r.in.empty();
}

std::string EncodeRcpt(const RcptRecord& rec) {
  if (rec.kind == RcptRecord::Kind::kDone)
    return std::string(1, kRcptDone);
  std::string v(1, rec.delay_warned ? kRcptDeferredWarned : kRcptDeferred);
  PutU16(v, rec.attempts);
  PutU64(v, static_cast<uint64_t>(rec.next_attempt_ms));
  return v;
}

std::optional<RcptRecord> DecodeRcpt(std::string_view value) {
  Reader r{value};
  char kind = static_cast<char>(r.Num(1));
  RcptRecord rec;
  if (kind == kRcptDone && r.ok && r.in.empty()) {
    rec.kind = RcptRecord::Kind::kDone;
    return rec;
  }
  if (kind != kRcptDeferred && kind != kRcptDeferredWarned)
    return std::nullopt;
  rec.delay_warned = kind == kRcptDeferredWarned;
  rec.attempts = static_cast<uint16_t>(r.Num(2));
  rec.next_attempt_ms = static_cast<int64_t>(r.Num(8));
  if (!r.ok || !r.in.empty())
    return std::nullopt;
  return rec;
}

std::string EncodeSuppression(const SuppressionValue& v) {
  std::string out;
  out.reserve(17 + v.klass.size() + v.reason.size());
  out.push_back(static_cast<char>(kSuppressionVersion));
  PutU64(out, static_cast<uint64_t>(v.since_ms));
  PutStr(out, v.klass);
  PutStr(out, v.reason);
  return out;
}

std::optional<SuppressionValue> DecodeSuppression(std::string_view value) {
  Reader r{value};
  SuppressionValue v;
  const auto version = static_cast<uint8_t>(r.Num(1));
  v.since_ms = static_cast<int64_t>(r.Num(8));
  v.klass = r.Str();
  v.reason = r.Str();
  if (!r.ok || !r.in.empty() || version != kSuppressionVersion || !ValidSuppressionClass(v.klass) ||
      v.reason.size() > kMaxSuppressionReason) {
    return std::nullopt;
  }
  return v;
}

std::string EncodeBodyRef(const BodyRef& ref) {
  std::string out;
  out.reserve(kBodyRefSize);
  out.push_back(static_cast<char>(kBodyRefVersion));
  PutU32(out, ref.segment);
  PutU64(out, ref.offset);
  PutU64(out, ref.length);
  PutU32(out, ref.crc);
  return out;
}

std::optional<BodyRef> DecodeBodyRef(std::string_view value) {
  if (value.size() != kBodyRefSize)
    return std::nullopt;
  Reader r{value};
  if (r.Num(1) != kBodyRefVersion)
    return std::nullopt;
  BodyRef ref;
  ref.segment = static_cast<uint32_t>(r.Num(4));
  ref.offset = r.Num(8);
  ref.length = r.Num(8);
  ref.crc = static_cast<uint32_t>(r.Num(4));
  if (!r.ok || ref.segment == 0)
    return std::nullopt;
  return ref;
}

}  // namespace spate::queue::records
