// softmax's dominant entry, correctly rounded: the finisher every softmax path applies to its rows.
//
// A softmax output y_i = e_i * (1 / sum) carries the rounding of the whole sum, which the
// dominant term fills: in a near-collapse row (p_max = 1 / (1 + s), s = sum of the others over
// the max's term, below 2^-8) that rounding is of the order of s itself, and p_max came out 1 ulp
// low in about 12% of such float32 rows, e.g. [-38.5, -56] gave 0.99999994 where the correctly
// rounded value (and torch's) is 1.0. Whether p_max is exactly 1 is what Softmax Collapse counts.
// The others' share is formed apart instead, as log_softmax keeps the max term out of its sum:
// with u_j the row's outputs (or any values proportional to them), t = sum over j != i of u_j
// (in double) and p_i = 1 - t / (u_i + t), rounded once. The u_j share the factor 1/sum, which
// cancels in the ratio, so t / u_i has a relative error of a few units of 2^-24 (2^-53), far below
// what matters for p_i = 1 - O(s): the result is the correctly rounded p_i but for inputs within
// about s * 2^-22 of a rounding boundary, and within 0.51 ulp in every case it is applied.
//
// Cost: one vector max pass over each output row, read from L1/L2 right after the kernel wrote it;
// the sum and the rewrite run only for rows whose max output reaches kDominantThreshold.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <cstddef>
#include <limits>

#include "simd/loops-inl.h"
#include "softmax/softmax_kernels.h"  // kDominantThreshold

namespace logitkit {
namespace LOGITKIT_TARGET {

// For outputs u_j = s * v[j] (s = 1: v holds the outputs themselves; otherwise v holds values
// the kernel scaled by s on their way out, the same product): when the largest output reaches
// kDominantThreshold, writes its correctly rounded value to out[i] for its first index i.
// NaN rows are left alone (their max compares false).
template <class T>
void finish_dominant_entry(const T* v, size_t n, T s, T* out) {
  using S = Simd<T>;
  const auto vs = S::set1(s);
  typename S::V acc[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  for_vectors<S>(
      n, [&](size_t i, int k) { acc[k] = S::max(acc[k], S::mul(S::load(v + i), vs)); },
      [&](size_t i, size_t r) { acc[0] = S::max(acc[0], S::mul(S::load_tail(v + i, r, T(0)), vs)); });
  const T top = S::reduce_max(S::max(S::max(acc[0], acc[1]), S::max(acc[2], acc[3])));
  if (!(top >= kDominantThreshold<T>) || !(top <= T(1) + T(1) / T(64))) return;  // outputs sum to ~1
  size_t index = n;
  double others = 0.0;
  for (size_t j = 0; j < n; ++j) {
    const T u = v[j] * s;
    if (index == n && u == top) {
      index = j;
    } else {
      others += static_cast<double>(u);
    }
  }
  if (index == n) return;
  const double p = 1.0 - others / (static_cast<double>(top) + others);
  out[index] = static_cast<T>(p);
}

// finish_dominant_entry for `rows` rows of outputs in place: row r at y + r * ldy.
template <class T>
void finish_dominant_entries(T* y, size_t rows, size_t n, ptrdiff_t ldy) {
  for (size_t r = 0; r < rows; ++r) finish_dominant_entry<T>(y + r * ldy, n, T(1), y + r * ldy);
}

}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
