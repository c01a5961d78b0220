// tests/fuzz/records_fuzz.cc
//
// Fuzzes the spool's record decoders (queue/records.h): what recovery reads back from disk,
// which a damaged or foreign spool can make anything.
//
// Input: [kind] record bytes. Kind (first byte, mod 5): 0 envelope value, 1 recipient record
// value, 2 recipient key, 3 message key, 4 body ref (CF "body_ref").
//
// Invariants (a violation traps):
//  - no decoder reads past its input or allocates beyond what the input can hold (ASan);
//  - what decodes re-encodes to the same bytes (one encoding per record): an envelope's fields
//    and recipients (version 1 without a campaign, 2 with one, 3 with a priority other than 0),
//    a recipient record, a key, a body ref (never of segment 0).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "queue/records.h"
#include "tests/fuzz/fuzz_util.h"

namespace spate::fuzz {
namespace {

void Envelope(std::string_view in) {
  queue::RecoveredMessage m;
  std::vector<queue::PendingRecipient> all;
  if (!queue::records::DecodeEnvelope(in, &m, &all))
    return;
  FUZZ_CHECK(!all.empty());
  queue::NewMessage again;
  again.mail_from = m.mail_from;
  again.body = std::string(0, 'x');
  again.body_8bit = m.body_8bit;
  again.smtputf8 = m.smtputf8;
  again.ret = m.ret;
  again.envid = m.envid;
  again.auth_user = m.auth_user;
  again.campaign = m.campaign;
  again.priority = m.priority;
  for (size_t i = 0; i < all.size(); ++i) {
    FUZZ_CHECK(all[i].index == i);
    again.rcpt_to.push_back(all[i].address);
    again.dsn.push_back(all[i].dsn);
  }
  std::string encoded = queue::records::EncodeEnvelope(again, m.received_ms);
  // The body size is the only field taken from the body: compare past it.
  FUZZ_CHECK(encoded.size() == in.size());
  FUZZ_CHECK(encoded.substr(0, 10) == in.substr(0, 10));
  FUZZ_CHECK(encoded.substr(18) == in.substr(18));
}

void Rcpt(std::string_view in) {
  auto r = queue::records::DecodeRcpt(in);
  if (r)
    FUZZ_CHECK(queue::records::EncodeRcpt(*r) == in);
}

void RcptKey(std::string_view in) {
  auto k = queue::records::DecodeRcptKey(in);
  if (k)
    FUZZ_CHECK(queue::records::RcptKey(k->id, k->index) == in);
}

void BodyRef(std::string_view in) {
  auto r = queue::records::DecodeBodyRef(in);
  if (r) {
    FUZZ_CHECK(r->segment != 0);
    FUZZ_CHECK(queue::records::EncodeBodyRef(*r) == in);
  }
}

void MessageKey(std::string_view in) {
  auto id = queue::records::DecodeMessageKey(in);
  if (id)
    FUZZ_CHECK(queue::records::MessageKey(*id) == in);
}

}  // namespace
}  // namespace spate::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 5) {
    case 0:
      spate::fuzz::Envelope(in);
      break;
    case 1:
      spate::fuzz::Rcpt(in);
      break;
    case 2:
      spate::fuzz::RcptKey(in);
      break;
    case 3:
      spate::fuzz::MessageKey(in);
      break;
    default:
      spate::fuzz::BodyRef(in);
      break;
  }
  return 0;
}
