// queue/internal/quiet_logger.h
//
// RocksDB's lines while a command opens the database (spate suppression, spate track) are not
// the user's business, and no LOG file is left in the spool: dropped, as the spool's own logger
// does while it opens.
// Threading: any (RocksDB calls it from its threads).
#pragma once

#include <cstdarg>

#include <rocksdb/env.h>

namespace spate::queue::internal {

class QuietLogger final : public rocksdb::Logger {
 public:
  QuietLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::ERROR_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char*, va_list) override {}
};

}  // namespace spate::queue::internal
