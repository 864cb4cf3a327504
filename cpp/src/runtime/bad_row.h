// The lowest row that failed a per-row argument check inside a parallel pass, so that the error a
// caller sees names the same row whatever the thread count. The error path only: a lock is fine.
#pragma once
#include <cstdint>
#include <limits>
#include <mutex>
#include <string>

#include "logitkit/error.h"

namespace logitkit {

class BadRow {
 public:
  void report(int64_t row, const std::string& what) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (row < row_) {
      row_ = row;
      what_ = what;
    }
  }
  // Throws an Error naming `argument` for the lowest reported row, if any.
  void throw_if_any(const char* argument) const {
    if (row_ != kNone)
      throw Error(Error::Kind::kInvalidArgument, argument, what_ + " (row " + std::to_string(row_) + ")");
  }

 private:
  static constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  std::mutex mutex_;
  int64_t row_ = kNone;
  std::string what_;
};

}  // namespace logitkit
