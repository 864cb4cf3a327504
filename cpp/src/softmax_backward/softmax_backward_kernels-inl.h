// Fused softmax / log_softmax backward (vector-Jacobian products), plain and masked, written once
// over Simd<T> and compiled per ISA.
//
// Cost model (per element, float32; masked ops also read one mask byte per element per pass):
//   softmax_backward      pass 1 s = sum(y dy) (reads y, dy: 8 B); pass 2 dx = c y (dy - s)
//                         (reads y, dy, writes dx: 12 B); no exp. Memory-bound: while the two
//                         input rows fit in L2 (n up to ~64K floats) pass 2 re-reads from cache,
//                         so DRAM sees ~12 B/element.
//   log_softmax_backward  pass 1 s = sum(dy) (reads dy: 4 B); pass 2 dx = c (dy - exp(y) s)
//                         (reads y, dy, writes dx: 12 B); 1 exp. Memory-bound beyond L2,
//                         exp-bound in cache.
// Both reductions must finish before any output is known, hence two passes. Sums are blocked
// (loops-inl.h) with block partials added in double, as in the softmax family.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <cstddef>
#include <cstdint>

#include "simd/loops-inl.h"
#include "simd/math-inl.h"
#include "softmax_backward/softmax_backward_kernels.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace softmax_backward_impl {

// Pass 1: sum over (included) positions of y * dy (kLog false) or of dy (kLog true). Excluded
// terms are selected away after the product, so inf/NaN there cannot leak into the sum.
template <class T, bool kLog, bool kMasked>
T row_sum(const T* y, const T* dy, const uint8_t* m, size_t n) {
  using S = Simd<T>;
  using V = typename S::V;
  BlockSum<T> total;
  for_blocks<T>(n, [&](size_t b, size_t len) {
    V acc[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
    for_vectors<S>(
        len,
        [&](size_t i, int k) {
          const size_t j = b + i;
          if constexpr (kLog && kMasked) {
            acc[k] = S::add(acc[k], S::blend(S::load_mask(m + j), S::load(dy + j), S::zero()));
          } else if constexpr (kLog) {
            acc[k] = S::add(acc[k], S::load(dy + j));
          } else if constexpr (kMasked) {
            acc[k] = S::add(acc[k], S::blend(S::load_mask(m + j), S::mul(S::load(y + j), S::load(dy + j)), S::zero()));
          } else {
            acc[k] = S::fma(S::load(y + j), S::load(dy + j), acc[k]);
          }
        },
        [&](size_t i, size_t r) {
          const size_t j = b + i;
          V t = kLog ? S::load_tail(dy + j, r, T(0)) : S::mul(S::load_tail(y + j, r, T(0)), S::load_tail(dy + j, r, T(0)));
          if constexpr (kMasked) t = S::blend(S::load_mask_tail(m + j, r), t, S::zero());
          acc[0] = S::add(acc[0], t);
        });
    total.add(S::reduce_add(sum4<T>(acc)));
  });
  return T(total.value());
}

// Pass 2: dx = y (c dy - c s) or c dy - exp(y) (c s); excluded positions get 0.
template <class T, bool kLog, bool kMasked, bool kStream>
void row_store(const T* y, const T* dy, const uint8_t* m, T* dx, size_t n, T c, T s) {
  using S = Simd<T>;
  using V = typename S::V;
  const V vc = S::set1(c), vcs = S::set1(c * s), vncs = S::set1(-(c * s));
  auto value = [&](V yv, V dyv) {
    if constexpr (kLog) {
      return S::fnma(vexp<T>(yv), vcs, S::mul(dyv, vc));
    } else {
      return S::mul(yv, S::fma(dyv, vc, vncs));
    }
  };
  for_vectors<S>(
      n,
      [&](size_t i, int) {
        V v = value(S::load(y + i), S::load(dy + i));
        if constexpr (kMasked) v = S::blend(S::load_mask(m + i), v, S::zero());
        put<S, kStream>(dx + i, v);
      },
      [&](size_t i, size_t r) {
        V v = value(S::load_tail(y + i, r, T(0)), S::load_tail(dy + i, r, T(0)));
        if constexpr (kMasked) v = S::blend(S::load_mask_tail(m + i, r), v, S::zero());
        S::store_tail(dx + i, v, r);
      });
}

// One row: the sum, then the output pass, with non-temporal stores of dx when `stream` (outputs far
// beyond the last-level cache: saves the read-for-ownership, 16 -> 12 bytes of traffic per element).
template <class T, bool kLog, bool kMasked>
void backward_row(const T* y, const T* dy, const uint8_t* m, T* dx, size_t n, T c, bool stream) {
  const T s = row_sum<T, kLog, kMasked>(y, dy, m, n);
  if (!stream) {
    row_store<T, kLog, kMasked, false>(y, dy, m, dx, n, c, s);
    return;
  }
  split_for_streaming(dx, n, [&](size_t b, size_t len, auto tag) {
    row_store<T, kLog, kMasked, decltype(tag)::value>(y + b, dy + b, kMasked ? m + b : m, dx + b, len, c, s);
  });
}

template <class T, bool kLog>
void backward_rows(const T* y, const T* dy, const uint8_t* m, T* dx, size_t rows, size_t n, ptrdiff_t ldy,
                   ptrdiff_t lddy, ptrdiff_t ldm, ptrdiff_t lddx, T c, bool stream) {
  for (size_t r = 0; r < rows; ++r) {
    if (m) {
      backward_row<T, kLog, true>(y + ptrdiff_t(r) * ldy, dy + ptrdiff_t(r) * lddy, m + ptrdiff_t(r) * ldm, dx + ptrdiff_t(r) * lddx, n, c, stream);
    } else {
      backward_row<T, kLog, false>(y + ptrdiff_t(r) * ldy, dy + ptrdiff_t(r) * lddy, nullptr, dx + ptrdiff_t(r) * lddx, n, c, stream);
    }
  }
  if (stream) Simd<T>::stream_fence();
}

template <class T>
SoftmaxBackwardKernels<T> make_softmax_backward_kernels() {
  SoftmaxBackwardKernels<T> k{};
  k.softmax_backward_rows = backward_rows<T, false>;
  k.log_softmax_backward_rows = backward_rows<T, true>;
  return k;
}

}  // namespace softmax_backward_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
