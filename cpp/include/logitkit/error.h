// The one exception type of the C++ API: every invalid argument is reported through it, never by abort().
#pragma once
#include <stdexcept>
#include <string>

#include "logitkit/export.h"

namespace logitkit {

// Thrown for invalid arguments (shape, axis, option values) and unsupported ISA requests.
// `argument()` names the offending parameter so bindings can surface it verbatim.
class LOGITKIT_API Error : public std::invalid_argument {
 public:
  enum class Kind { kInvalidArgument, kUnsupportedIsa };
  Error(Kind kind, std::string argument, const std::string& message)
      : std::invalid_argument(argument.empty() ? message : argument + ": " + message),
        kind_(kind),
        argument_(std::move(argument)) {}
  Kind kind() const noexcept { return kind_; }
  const std::string& argument() const noexcept { return argument_; }

 private:
  Kind kind_;
  std::string argument_;
};

}  // namespace logitkit
