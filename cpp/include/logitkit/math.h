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

namespace logitkit {

// Probes of this machine's two roofs, measured with the active backend on the thread pool's
// threads: what `python -m logitkit bench` and bench/ judge kernels against. Compute-bound kernels
// (gemm, linear_cross_entropy) against the FMA peak; memory-bound ones (softmax beyond the caches)
// against the copy bandwidth.
//
// float32 FLOP/s of get_num_threads() tasks each running independent chains of the backend's
// widest FMA for about `seconds` (2 flops per lane per FMA). The scalar backend has no vector FMA:
// its figure is the baseline's, not the chip's.
LOGITKIT_API double measure_fma_peak(double seconds = 0.1);
// Bytes per second, counting each byte read and each byte written, of the fastest of `repeats`
// copies of a `bytes`-byte float32 buffer with streaming stores, split by size over the pool.
LOGITKIT_API double measure_copy_bandwidth(size_t bytes = size_t{256} << 20, int repeats = 5);

}  // namespace logitkit
