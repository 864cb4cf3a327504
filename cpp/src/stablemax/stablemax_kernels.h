// The stablemax family's slot in the dispatch table: StableMax and log-StableMax (grokking paper) forward and backward.
// ISA-neutral: included by the driver (stablemax.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>
#include <limits>

namespace logitkit {

// Pass-1 results of one row (or chunk), accumulated in double across blocks.
struct StablemaxSums {
  double sum;    // sum_i sc * s(c x_i)
  double other;  // sum_i sc * s(c x_i) * dy_i (sum_dot), sum_i dy_i (sum_total), or for
                 // sum_top: sum_i sc * s(c x_i) over all entries but one largest (the sum minus top)
  double top;    // sum_top only: max_i c x_i
  double amax;   // max_i (1 + |c x_i|) for c > 1 (else 0): inf when c x overflows (or x is infinite)
};

// Scalar sc * s(t) with the vector formula, for merging lanes and blocks of sum_top.
template <class T>
T scaled_s_scalar(T t, T sc) {
  const T a = T(1) + (t < T(0) ? -t : t);
  return T(0) <= t ? a * sc : sc / a;
}

// Running (largest c x, sum over the others) pairs, merged as in the kernel: the smaller of the
// two tops joins the sum. NaN reaches `rest` (min keeps its second operand's NaN).
struct TopRest {
  double top, rest;
  template <class T>
  void merge(T other_top, double other_rest, T sc) {
    const T t = static_cast<T>(top);
    rest += other_rest + static_cast<double>(scaled_s_scalar<T>(t < other_top ? t : other_top, sc));
    top = static_cast<double>(t > other_top ? t : other_top);
  }
};

// Notation: a = 1 + |c x|, s = a for c x >= 0 and 1/a otherwise (StableMax's s(c x)); sc is a
// power-of-two scale the driver picks so the row sum S' = sc * sum s stays in the normal range;
// inv = 1/S', w = sc/S' (so p = s/S is a * sc * inv for c x >= 0 and w / a otherwise).
template <class T>
struct StablemaxKernels {
  // Function pointers filled per ISA by make_stablemax_kernels<T>() in stablemax_kernels-inl.h.
  // Each works on n contiguous elements; the driver plans rows, scaling and threads.
  StablemaxSums (*sum)(const T* x, size_t n, T c, T sc);
  StablemaxSums (*sum_dot)(const T* x, const T* dy, size_t n, T c, T sc);
  StablemaxSums (*sum_total)(const T* x, const T* dy, size_t n, T c, T sc);
  StablemaxSums (*sum_top)(const T* x, size_t n, T c, T sc);
  void (*store)(const T* x, T* y, size_t n, T c, T sc, T inv, T w);  // y = p
  // y = log p: y_top where c x == top (the largest entries, log p = -log1p(rest / s_top) from the
  // driver), log(p) where p is normal, sign(c x) log1p(|c x|) - log_sum (= log s - log S) below.
  void (*log_store)(const T* x, T* y, size_t n, T c, T sc, T inv, T w, T top, T y_top, T log_sum);
  // dx = c p (dy - g) / a, with g = sum_j p_j dy_j (StableMax VJP)
  void (*backward_store)(const T* x, const T* dy, T* dx, size_t n, T c, T sc, T inv, T w, T g);
  // dx = c (dy - G p) / a, with G = sum_j dy_j (log-StableMax VJP)
  void (*log_backward_store)(const T* x, const T* dy, T* dx, size_t n, T c, T sc, T inv, T w, T G);
};

}  // namespace logitkit
