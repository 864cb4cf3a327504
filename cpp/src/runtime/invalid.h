// The drivers' one-line throw of an Error naming the bad argument.
#pragma once
#include <string>

#include "logitkit/error.h"

namespace logitkit {

[[noreturn]] inline void invalid(const char* argument, const std::string& message) {
  throw Error(Error::Kind::kInvalidArgument, argument, message);
}

}  // namespace logitkit
