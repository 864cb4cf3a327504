// Elementwise vector math used inside the kernels, exposed for reuse and accuracy testing.
#pragma once
#include <cstddef>

#include "logitkit/export.h"

namespace logitkit {

// y[i] = exp(x[i]) with the active backend's vector exp: max error 1 ulp over the whole range
// (tests/cpp/test_exp_accuracy.cc), NaN propagates, overflow gives +inf, denormal results are
// rounded (never flushed). x and y may be the same pointer.
LOGITKIT_API void vexp(const float* x, float* y, size_t n);
LOGITKIT_API void vexp(const double* x, double* y, size_t n);

}  // namespace logitkit
