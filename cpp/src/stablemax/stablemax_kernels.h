// The stablemax family's slot in the dispatch table: StableMax and log-StableMax (grokking paper) forward and backward.
// ISA-neutral: included by the driver (stablemax.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>

namespace logitkit {

// Pass-1 results of one row (or chunk), accumulated in double across blocks.
struct StablemaxSums {
  double sum;    // sum_i sc * s(c x_i)
  double other;  // sum_i sc * s(c x_i) * dy_i (sum_dot) or sum_i dy_i (sum_total)
};

// Notation: a = 1 + |c x|, s = a for c x >= 0 and 1/a otherwise (StableMax's s(c x)); sc is a
// power-of-two scale the driver picks so the row sum S' = sc * sum s stays in the normal range;
// inv = 1/S', w = sc/S' (so p = s/S is a * sc * inv for c x >= 0 and w / a otherwise).
template <class T>
struct StablemaxKernels {
  // Function pointers filled per ISA by make_stablemax_kernels<T>() in stablemax_kernels-inl.h.
  // Each works on n contiguous elements; the driver plans rows, scaling and threads.
  double (*sum)(const T* x, size_t n, T c, T sc);
  StablemaxSums (*sum_dot)(const T* x, const T* dy, size_t n, T c, T sc);
  StablemaxSums (*sum_total)(const T* x, const T* dy, size_t n, T c, T sc);
  void (*store)(const T* x, T* y, size_t n, T c, T sc, T inv, T w);  // y = p
  void (*log_store)(const T* x, T* y, size_t n, T c, T log_sum);     // y = log s - log S
  // dx = c p (dy - g) / a, with g = sum_j p_j dy_j (StableMax VJP)
  void (*backward_store)(const T* x, const T* dy, T* dx, size_t n, T c, T sc, T inv, T w, T g);
  // dx = c (dy - G p) / a, with G = sum_j dy_j (log-StableMax VJP)
  void (*log_backward_store)(const T* x, const T* dy, T* dx, size_t n, T c, T sc, T inv, T w, T G);

  // Elementwise vector log and log1p (simd/math-inl.h), exposed for the accuracy tests.
  void (*log)(const T* x, T* y, size_t n);
  void (*log1p)(const T* x, T* y, size_t n);
};

}  // namespace logitkit
