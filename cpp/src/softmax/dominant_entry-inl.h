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
// Cost: one max per stored vector in the last pass of each path (TopOutput; measured within noise),
// or one max pass from cache where a path keeps none; the sum and the rewrite run only for rows
// whose max output reaches kDominantThreshold.
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

// Rewrites the dominant entry for outputs u_j = s * v[j] (s = 1: v holds the outputs themselves;
// otherwise v holds values the kernel scaled by s on their way out, the same product), given
// `top`, their max: when it reaches kDominantThreshold, out[i] = 1 - t / (top + t) for the first
// index i of the max. Rare (near-collapse rows only); NaN rows are left alone (top compares false).
template <class T>
void fix_dominant_entry(const T* v, size_t n, T s, T top, T* out) {
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
  out[index] = static_cast<T>(1.0 - others / (static_cast<double>(top) + others));
}

// Largest-output accumulators for the last pass of a softmax path: each store pass keeps the max
// of what it stores in slot k (as the max passes do), so finding `top` costs one max per vector
// in a loop bound by its stores, not another pass. Outputs are >= 0, so the slots start at 0.
template <class T>
struct TopOutput {
  typename Simd<T>::V slot[4] = {Simd<T>::zero(), Simd<T>::zero(), Simd<T>::zero(), Simd<T>::zero()};
  __attribute__((always_inline)) void add(int k, typename Simd<T>::V u) { slot[k] = Simd<T>::max(slot[k], u); }
  T value() const {
    using S = Simd<T>;
    return S::reduce_max(S::max(S::max(slot[0], slot[1]), S::max(slot[2], slot[3])));
  }
};

// fix_dominant_entry for a pass that kept no TopOutput (the recompute and online store passes,
// masked rows): one max pass over the outputs, from cache.
template <class T>
void finish_dominant_entry(T* y, size_t n) {
  using S = Simd<T>;
  TopOutput<T> top;
  for_vectors<S>(
      n, [&](size_t i, int k) { top.add(k, S::load(y + i)); },
      [&](size_t i, size_t r) { top.add(0, S::load_tail(y + i, r, T(0))); });
  fix_dominant_entry<T>(y, n, T(1), top.value(), y);
}

// finish_dominant_entry for `rows` rows of outputs in place: row r at y + r * ldy.
template <class T>
void finish_dominant_entries(T* y, size_t rows, size_t n, ptrdiff_t ldy) {
  for (size_t r = 0; r < rows; ++r) finish_dominant_entry<T>(y + ptrdiff_t(r) * ldy, n);
}

}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
