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

namespace logitkit {

// y[i] = log(x[i]) and y[i] = log1p(x[i]) with the active backend's vector log (the one the
// kernels use): max error 1 ulp (float) / 1 ulp (double), measured in
// tests/test_vector_log.py. log: 0 -> -inf, negative -> NaN; log1p: -1 -> -inf, below -1 -> NaN;
// +inf -> +inf and NaN propagates for both. x and y may be the same pointer.
LOGITKIT_API void vlog(const float* x, float* y, size_t n);
LOGITKIT_API void vlog(const double* x, double* y, size_t n);
LOGITKIT_API void vlog1p(const float* x, float* y, size_t n);
LOGITKIT_API void vlog1p(const double* x, double* y, size_t n);

}  // namespace logitkit
