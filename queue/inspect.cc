#include "queue/inspect.h"

#include <memory>

#include <rocksdb/db.h>

#include "queue/errc.h"
#include "queue/internal/quiet_logger.h"
#include "queue/records.h"

namespace spate::queue {

Result<MessageId> ParseId(std::string_view text) {
  if (text.empty() || text.size() > 16)
    return Unexpected{Errc::kNotFound};
  MessageId id = 0;
  for (char c : text) {
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else {
      return Unexpected{Errc::kNotFound};
    }
    id = (id << 4) | static_cast<MessageId>(v);
  }
  return id;
}

Result<SpooledMessage> InspectSpoolMessage(const std::string& path, MessageId id,
                                           std::string* error) {
  rocksdb::DBOptions options;
  options.info_log = std::make_shared<internal::QuietLogger>();
  // Only the column families read; RocksDB opens a subset read-only.
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors = {
      {rocksdb::kDefaultColumnFamilyName, {}}, {"envelope", {}}, {"rcpt", {}}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::OpenForReadOnly(options, path, descriptors, &handles, &raw);
  if (!s.ok()) {
    *error = "no spool at " + path + ": " + s.ToString();
    return Unexpected{Errc::kNotFound};
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  struct Handles {
    rocksdb::DB* db;
    std::vector<rocksdb::ColumnFamilyHandle*>& h;
    ~Handles() {
      for (auto* x : h)
        db->DestroyColumnFamilyHandle(x);
    }
  } close{db.get(), handles};

  std::string value;
  s = db->Get(rocksdb::ReadOptions(), handles[1], records::MessageKey(id), &value);
  if (s.IsNotFound()) {
    *error = "message " + FormatId(id) + " is not in the spool";
    return Unexpected{Errc::kNotFound};
  }
  if (!s.ok()) {
    *error = "reading the spool: " + s.ToString();
    return Unexpected{Errc::kIo};
  }
  RecoveredMessage env;
  std::vector<PendingRecipient> all;
  if (!records::DecodeEnvelope(value, &env, &all)) {
    *error = "the envelope of " + FormatId(id) + " does not decode";
    return Unexpected{Errc::kCorruption};
  }
  SpooledMessage out;
  out.id = id;
  out.mail_from = std::move(env.mail_from);
  out.received_ms = env.received_ms;
  out.body_size = env.body_size;
  out.envid = std::move(env.envid);
  out.auth_user = std::move(env.auth_user);
  out.campaign = std::move(env.campaign);
  out.recipients.reserve(all.size());
  for (PendingRecipient& p : all) {
    SpooledRecipient r;
    r.index = p.index;
    r.address = std::move(p.address);
    out.recipients.push_back(std::move(r));
  }
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handles[2]));
  for (it->Seek(records::RcptKey(id, 0)); it->Valid(); it->Next()) {
    auto key = records::DecodeRcptKey(std::string_view(it->key().data(), it->key().size()));
    if (!key || key->id != id)
      break;
    auto rec = records::DecodeRcpt(std::string_view(it->value().data(), it->value().size()));
    if (!rec || key->index >= out.recipients.size()) {
      *error = "a recipient record of " + FormatId(id) + " does not decode";
      return Unexpected{Errc::kCorruption};
    }
    SpooledRecipient& r = out.recipients[key->index];
    if (rec->kind == records::RcptRecord::Kind::kDone) {
      r.state = SpooledRecipient::State::kDone;
    } else {
      r.state = SpooledRecipient::State::kDeferred;
      r.attempts = rec->attempts;
      r.next_attempt_ms = rec->next_attempt_ms;
      r.delay_warned = rec->delay_warned;
    }
  }
  return out;
}

}  // namespace spate::queue
