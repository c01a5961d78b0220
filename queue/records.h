// queue/records.h
//
// The spool's record codecs: keys and values of its column families (layouts in spool.h).
// Pure functions on bytes; Decode* never trust their input (a short or garbled record is a
// decode failure, never a read past the end).
// Threading: none (value functions).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "queue/body_log.h"
#include "queue/spool.h"
#include "queue/suppression_csv.h"

namespace spate::queue::records {

// CF "body" and "envelope": id(8), big-endian, so keys sort by id.
std::string MessageKey(MessageId id);
std::optional<MessageId> DecodeMessageKey(std::string_view key);

// CF "rcpt": id(8) index(4).
std::string RcptKey(MessageId id, uint32_t index);
struct RcptKeyParts {
  MessageId id = 0;
  uint32_t index = 0;
};
std::optional<RcptKeyParts> DecodeRcptKey(std::string_view key);

// The envelope of an accepted message (everything but the body), written once, in the lowest
// version that holds it (spool.h); a priority beyond -9..9 is stored as the nearest bound.
std::string EncodeEnvelope(const NewMessage& m, int64_t received_ms);
// Fills every field of `out` but id and recipients; `all` gets every recipient of the message
// (index = position), with attempts 0. False when the record does not decode.
bool DecodeEnvelope(std::string_view value, RecoveredMessage* out,
                    std::vector<PendingRecipient>* all);

// A recipient's record: deferred (attempts, next attempt) or done (finished while others of its
// message are pending).
struct RcptRecord {
  enum class Kind : uint8_t { kDeferred, kDone } kind = Kind::kDeferred;
  uint16_t attempts = 0;
  int64_t next_attempt_ms = 0;
  bool delay_warned = false;  // its sender has had the DSN delay notice (RFC 3464 "delayed")

  friend bool operator==(const RcptRecord&, const RcptRecord&) = default;
};
std::string EncodeRcpt(const RcptRecord& r);
std::optional<RcptRecord> DecodeRcpt(std::string_view value);

// CF "body_ref": where a body kept in the body log is (body_log.h): version(1) segment(4)
// offset(8) length(8) crc32c(4). Decode refuses another version, another size, segment 0.
std::string EncodeBodyRef(const BodyRef& ref);
std::optional<BodyRef> DecodeBodyRef(std::string_view value);

// CF "suppression": the key is the normalized address (NormalizeAddress); the value
// version(1) since_ms(8) str class, str reason (str = len(4) bytes). Decode refuses a class
// that is not ValidSuppressionClass and a reason over kMaxSuppressionReason.
struct SuppressionValue {
  int64_t since_ms = 0;
  std::string klass;
  std::string reason;

  friend bool operator==(const SuppressionValue&, const SuppressionValue&) = default;
};
std::string EncodeSuppression(const SuppressionValue& v);
std::optional<SuppressionValue> DecodeSuppression(std::string_view value);

}  // namespace spate::queue::records
