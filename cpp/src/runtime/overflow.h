// Detection of rows whose x * c (c = 1/temperature) overflows although x is finite: the drivers
// of ops that scale x without a shift (stablemax, sparsemax family) give those rows an exact path.
#pragma once
#include <cmath>
#include <cstddef>
#include <limits>

namespace logitkit {

// Whether c x overflows for some finite x of a row without NaN or +inf (rows with those keep
// their special-value semantics). Only possible for c > 1 and |x| within a factor c of T's max.
template <class T>
bool scaled_row_overflows(const T* x, size_t n, T c) {
  if (!(c > T(1))) return false;
  // Cheap vectorisable pre-check (one compare per element, no branch): rows with every |x| below
  // half of max/c (conservative against the rounding of the quotient) cannot overflow.
  const T limit = std::numeric_limits<T>::max() / c * T(0.5);
  bool large = false;
  for (size_t i = 0; i < n; ++i) large |= std::abs(x[i]) > limit;
  if (!large) return false;
  bool any = false;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(x[i]) || x[i] == std::numeric_limits<T>::infinity()) return false;
    any = any || (std::isfinite(x[i]) && std::isinf(std::abs(x[i]) * c));
  }
  return any;
}

}  // namespace logitkit
