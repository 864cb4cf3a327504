// Masked softmax / log_softmax kernels (NumPy where= masks), written once over Simd<T> and
// compiled per ISA. The mask is read as bytes next to x and widened to a lane mask
// (Simd::load_mask), so x is never copied or overwritten with -inf.
//
// Cost model (per element, float32; a mask byte is read alongside every read of x):
//   softmax      three passes, like three_pass_reload: max (reads x + mask, 5 B), exp-store-sum
//                (reads x + mask, writes y, 9 B), scale (reads and writes y, 8 B); 1 exp.
//                Memory-bound once a row leaves L2; while it fits, passes 2-3 hit cache.
//   log_softmax  max (5 B), untied exp sum (5 B, 1 exp), shift-store (reads x + mask, writes y,
//                9 B); 1 exp. Compute-bound in cache (the exp), memory-bound beyond L2.
// SoftmaxOptions::algorithm is ignored: the masked ops always use these schedules.
// Sums are blocked (loops-inl.h) with block partials added in double, as in the softmax family.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "masked_softmax/masked_softmax_kernels.h"
#include "simd/loops-inl.h"
#include "simd/math-inl.h"
#include "softmax/dominant_entry-inl.h"
#include "softmax/softmax_kernels.h"
#include "softmax/untied_sum_finish-inl.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace masked_softmax_impl {

template <class T>
constexpr T kNegInf = -std::numeric_limits<T>::infinity();

// Max over included positions; -inf when there is none.
template <class T>
T masked_max(const T* x, const uint8_t* m, size_t n) {
  using S = Simd<T>;
  const auto ninf = S::set1(kNegInf<T>);
  typename S::V acc[4] = {ninf, ninf, ninf, ninf};
  for_vectors<S>(
      n, [&](size_t i, int k) { acc[k] = S::max(acc[k], S::blend(S::load_mask(m + i), S::load(x + i), ninf)); },
      [&](size_t i, size_t r) {
        acc[0] = S::max(acc[0], S::blend(S::load_mask_tail(m + i, r), S::load_tail(x + i, r, kNegInf<T>), ninf));
      });
  return S::reduce_max(S::max(S::max(acc[0], acc[1]), S::max(acc[2], acc[3])));
}

inline bool any_included(const uint8_t* m, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (m[i]) return true;
  return false;
}

// y = mask ? exp(c (x - shift)) : 0, returning the sum of y.
template <class T>
T exp_store_sum_block(const T* x, const uint8_t* m, T* y, size_t n, T shift, T c) {
  using S = Simd<T>;
  const auto vs = S::set1(shift), vc = S::set1(c);
  typename S::V acc[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  for_vectors<S>(
      n,
      [&](size_t i, int k) {
        auto e = S::blend(S::load_mask(m + i), vexp<T>(scaled_difference<T>(S::load(x + i), vs, vc)), S::zero());
        S::store(y + i, e);
        acc[k] = S::add(acc[k], e);
      },
      [&](size_t i, size_t r) {
        auto v = S::load_tail(x + i, r, kNegInf<T>);
        auto e = S::blend(S::load_mask_tail(m + i, r), vexp<T>(scaled_difference<T>(v, vs, vc)), S::zero());
        S::store_tail(y + i, e, r);
        acc[0] = S::add(acc[0], e);
      });
  return S::reduce_add(sum4<T>(acc));
}

template <class T>
T exp_store_sum(const T* x, const uint8_t* m, T* y, size_t n, T shift, T c) {
  BlockSum<T> total;
  for_blocks<T>(n, [&](size_t b, size_t len) { total.add(exp_store_sum_block(x + b, m + b, y + b, len, shift, c)); });
  return T(total.value());
}

// Sum over included positions of exp(c (x - shift)).
template <class T>
T exp_sum(const T* x, const uint8_t* m, size_t n, T shift, T c) {
  using S = Simd<T>;
  const auto vs = S::set1(shift), vc = S::set1(c);
  BlockSum<T> total;
  for_blocks<T>(n, [&](size_t b, size_t len) {
    typename S::V acc[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
    for_vectors<S>(
        len,
        [&](size_t i, int k) {
          auto e = vexp<T>(scaled_difference<T>(S::load(x + b + i), vs, vc));
          acc[k] = S::add(acc[k], S::blend(S::load_mask(m + b + i), e, S::zero()));
        },
        [&](size_t i, size_t r) {
          auto e = vexp<T>(scaled_difference<T>(S::load_tail(x + b + i, r, kNegInf<T>), vs, vc));
          acc[0] = S::add(acc[0], S::blend(S::load_mask_tail(m + b + i, r), e, S::zero()));
        });
    total.add(S::reduce_add(sum4<T>(acc)));
  });
  return T(total.value());
}

// y *= s everywhere (excluded positions hold 0 and stay 0 for finite s).
template <class T>
void scale(T* y, size_t n, T s) {
  using S = Simd<T>;
  const auto vs = S::set1(s);
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(y + i, S::mul(S::load(y + i), vs)); },
      [&](size_t i, size_t r) { S::store_tail(y + i, S::mul(S::load_tail(y + i, r, T(0)), vs), r); });
}

// y = mask ? y * s : 0, for a NaN s (a NaN or +inf among the included inputs).
template <class T>
void masked_scale(T* y, const uint8_t* m, size_t n, T s) {
  using S = Simd<T>;
  const auto vs = S::set1(s);
  for_vectors<S>(
      n,
      [&](size_t i, int) { S::store(y + i, S::blend(S::load_mask(m + i), S::mul(S::load(y + i), vs), S::zero())); },
      [&](size_t i, size_t r) {
        auto v = S::mul(S::load_tail(y + i, r, T(0)), vs);
        S::store_tail(y + i, S::blend(S::load_mask_tail(m + i, r), v, S::zero()), r);
      });
}

// Sum of exp(c (x - mx)) over included x != mx, and the count of included x == mx (see the
// softmax family's untied_sum: keeping the max term out lets log_softmax use log1p).
template <class T>
UntiedSum<T> untied_sum(const T* x, const uint8_t* m, size_t n, T mx, T c) {
  using S = Simd<T>;
  using V = typename S::V;
  const auto vm = S::set1(mx), vc = S::set1(c), one = S::set1(T(1));
  BlockSum<T> sum, tied;
  for_blocks<T>(n, [&](size_t b, size_t len) {
    V acc[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
    V ties[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
    auto accumulate = [&](V v, typename S::M inc, int k) {
      auto tie = S::mask_and(inc, S::eq(v, vm));
      V e = vexp<T>(scaled_difference<T>(v, vm, vc));
      acc[k] = S::add(acc[k], S::blend(S::mask_andnot(tie, inc), e, S::zero()));
      ties[k] = S::add(ties[k], S::blend(tie, one, S::zero()));
    };
    for_vectors<S>(
        len, [&](size_t i, int k) { accumulate(S::load(x + b + i), S::load_mask(m + b + i), k); },
        [&](size_t i, size_t r) {
          accumulate(S::load_tail(x + b + i, r, kNegInf<T>), S::load_mask_tail(m + b + i, r), 0);
        });
    sum.add(S::reduce_add(sum4<T>(acc)));
    tied.add(S::reduce_add(sum4<T>(ties)));
  });
  return {T(sum.value()), T(tied.value())};
}

// y = mask ? c (x - shift) - offset : -inf.
template <class T>
void shift_store(const T* x, const uint8_t* m, T* y, size_t n, T shift, T c, T offset) {
  using S = Simd<T>;
  const auto vs = S::set1(shift), vc = S::set1(c), vo = S::set1(offset), ninf = S::set1(kNegInf<T>);
  for_vectors<S>(
      n,
      [&](size_t i, int) {
        auto v = S::sub(scaled_difference<T>(S::load(x + i), vs, vc), vo);
        S::store(y + i, S::blend(S::load_mask(m + i), v, ninf));
      },
      [&](size_t i, size_t r) {
        auto v = S::sub(scaled_difference<T>(S::load_tail(x + i, r, T(0)), vs, vc), vo);
        S::store_tail(y + i, S::blend(S::load_mask_tail(m + i, r), v, ninf), r);
      });
}

template <class T>
void fill(T* y, size_t n, T value) {
  for (size_t i = 0; i < n; ++i) y[i] = value;
}

// Included positions behave exactly like a plain softmax over them (NaN or +inf among them gives
// NaN there, as torch); excluded positions are 0 and never NaN.
template <class T>
void softmax_row(const T* x, const uint8_t* m, T* y, size_t n, T c) {
  const T mx = masked_max(x, m, n);
  const T s = exp_store_sum(x, m, y, n, mx, c);
  if (s == T(0)) return;  // nothing included (the max term alone gives 1): y already holds zeros
  if (std::isfinite(s)) {
    scale(y, n, T(1) / s);
  } else {
    masked_scale(y, m, n, T(1) / s);
  }
}

template <class T>
void log_softmax_row(const T* x, const uint8_t* m, T* y, size_t n, T c) {
  const T mx = masked_max(x, m, n);
  if (std::isfinite(mx)) {
    shift_store(x, m, y, n, mx, c, log_sum_from_untied(untied_sum(x, m, n, mx, c)));
  } else if (mx == kNegInf<T> && !any_included(m, n)) {
    fill(y, n, kNegInf<T>);
  } else {  // +inf, NaN or all included -inf: IEEE arithmetic on the unshifted values, as log_softmax
    shift_store(x, m, y, n, T(0), c, std::log(exp_sum(x, m, n, T(0), c)));
  }
}

template <class T>
void softmax_rows(const T* x, const uint8_t* m, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldm,
                  ptrdiff_t ldy, T c) {
  for (size_t r = 0; r < rows; ++r) {
    softmax_row(x + ptrdiff_t(r) * ldx, m + ptrdiff_t(r) * ldm, y + ptrdiff_t(r) * ldy, n, c);
    finish_dominant_entry<T>(y + ptrdiff_t(r) * ldy, n);  // excluded entries are 0
  }
}

template <class T>
void log_softmax_rows(const T* x, const uint8_t* m, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldm,
                      ptrdiff_t ldy, T c) {
  for (size_t r = 0; r < rows; ++r) log_softmax_row(x + ptrdiff_t(r) * ldx, m + ptrdiff_t(r) * ldm, y + ptrdiff_t(r) * ldy, n, c);
}

template <class T>
MaskedSoftmaxKernels<T> make_masked_softmax_kernels() {
  MaskedSoftmaxKernels<T> k{};
  k.softmax_rows = softmax_rows<T>;
  k.log_softmax_rows = log_softmax_rows<T>;
  return k;
}

}  // namespace masked_softmax_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
