// queue/errc.h
//
// Errors of the spool. RocksDB's Status is converted here and nowhere else (ToError in
// spool.cc); its message goes to the log at the point of conversion.
#pragma once

#include <system_error>

namespace spate::queue {

enum class Errc {
  kIo = 1,      // RocksDB reported an I/O error: the spool cannot be trusted to persist
  kCorruption,  // a record that does not decode
  kNotFound,    // a body or envelope that should be there is not
  kShutdown,    // the spool is stopping and takes no more work
  kNoSpace,     // refused: the file system is under [spool] min_free_space (or full)
  kInvalid,     // input that does not parse (a suppression CSV line)
  kDisabled,    // the suppression list is off ([suppression] enabled = false)
  kInUse,       // another process (a running spate) holds the spool's lock
};

// kNoSpace is equivalent to std::errc::no_space_on_device, so that code that knows nothing of
// the spool (the SMTP session) can tell it apart.
const std::error_category& ErrorCategory();
inline std::error_code make_error_code(Errc e) {
  return {static_cast<int>(e), ErrorCategory()};
}

}  // namespace spate::queue

template <>
struct std::is_error_code_enum<spate::queue::Errc> : std::true_type {};
