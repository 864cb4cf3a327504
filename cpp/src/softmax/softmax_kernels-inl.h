// softmax / log_softmax / logsumexp kernels, written once over Simd<T> and compiled per ISA.
//
// Cost model (per element, float32 = 4 bytes; "bound" as measured on a 2-core Zen 5, AVX-512):
//   three_pass_reload    range pass (read x: max |x|, and the max unless unshifted_exp_ok), exp
//                        pass (read x, write y, 1 exp), scale pass (read and write y): 3 passes,
//                        16 bytes through the core, 1 exp. Compute-bound (the exp pass) while a
//                        row fits in L2. Several rows of a call are software-pipelined
//                        (softmax_rows_pipelined): the range pass of the next row
//                        and the scale pass of the previous one ride in the exp loop, so a row
//                        costs about one exp pass. Beyond L2 the range pass and the first read of
//                        the exp pass go to memory: memory-bound, 8 bytes of DRAM traffic plus
//                        the read-for-ownership of y.
//   three_pass_recompute max, exp-sum, exp-scale-store: reads x three times, writes y once; 2 exp.
//                        Compute-bound in cache.
//   two_pass             extexp-sum (read x), extexp-store (read x, write y): 2 passes, 12 bytes,
//                        2 extexp. No max pass: one trip to memory fewer than three_pass_reload
//                        when rows exceed the caches, where it is memory-bound.
//   online               online-sum (read x, 1 exp + rare rescales), exp-scale-store (read x,
//                        write y, 1 exp): 2 passes, 12 bytes, 2 exp. Compute-bound in cache.
//   log_softmax          max, untied sum (1 exp), shift-store (no exp): 3 passes, 12 bytes, 1 exp.
//                        Compute-bound in cache; pipelined across the rows of a call like
//                        three_pass_reload (log_softmax_rows_pipelined).
//   logsumexp            max, untied sum (1 exp): 2 reads, 8 bytes, 1 exp. Unweighted batches are
//                        pipelined too (the next row's max rides in the sum).
// Every exp runs in lockstep groups of kGroup vectors (math-inl.h: vexp_group), and every
// reduction keeps 4 independent accumulators so the FP add latency is hidden.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "simd/loops-inl.h"
#include "simd/math-inl.h"
#include "softmax/dominant_entry-inl.h"
#include "softmax/softmax_kernels.h"
#include "softmax/untied_sum_finish-inl.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace softmax_impl {

template <class T>
constexpr T kNegInf = -std::numeric_limits<T>::infinity();

// Whether rows x..x+rows*ldx and y..y+rows*ldy (n elements each) share no memory. Kernels whose
// exp may run twice over a block (GuardedExp's redo, a speculative short row) read x again after
// writing y, so they take that path only for disjoint x and y (in place: the checked exp).
template <class T>
bool disjoint(const T* x, size_t rows, size_t n, ptrdiff_t ldx, const T* y, ptrdiff_t ldy) {
  auto span = [&](const T* p, ptrdiff_t ld) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    const uintptr_t last = a + uintptr_t(ptrdiff_t(rows - 1) * ld) * sizeof(T);  // ld may be negative
    return std::pair<uintptr_t, uintptr_t>(std::min(a, last), std::max(a, last) + n * sizeof(T));
  };
  const auto [x0, x1] = span(x, ldx);
  const auto [y0, y1] = span(y, ldy);
  return x1 <= y0 || y1 <= x0;
}

// The max over the four accumulator slots of a max pass.
template <class T>
T max4(const typename Simd<T>::V (&acc)[4]) {
  using S = Simd<T>;
  return S::reduce_max(S::max(S::max(acc[0], acc[1]), S::max(acc[2], acc[3])));
}

template <class T>
T row_max(const T* x, size_t n) {
  using S = Simd<T>;
  typename S::V acc[4] = {S::set1(kNegInf<T>), S::set1(kNegInf<T>), S::set1(kNegInf<T>),
                          S::set1(kNegInf<T>)};
  for_vectors<S>(
      n, [&](size_t i, int k) { acc[k] = S::max(acc[k], S::load(x + i)); },
      [&](size_t i, size_t r) { acc[0] = S::max(acc[0], S::load_tail(x + i, r, kNegInf<T>)); });
  return max4<T>(acc);
}

// max |x| over a row, the range check of three_pass_reload (see unshifted_exp_ok); NaN is ignored
// (max_magnitude), so a NaN row may take the unshifted exp, which propagates it. Slot k as in
// row_max: the rider of softmax_rows_pipelined computes the same lanes.
template <class T>
T row_magnitude(const T* x, size_t n) {
  using S = Simd<T>;
  typename S::V acc[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  for_vectors<S>(
      n, [&](size_t i, int k) { acc[k] = S::max_magnitude(acc[k], S::load(x + i)); },
      [&](size_t i, size_t r) { acc[0] = S::max_magnitude(acc[0], S::load_tail(x + i, r, T(0))); });
  return max4<T>(acc);
}

// row_max and row_magnitude in one read of x (the same lanes as each alone).
template <class T>
T row_max_magnitude(const T* x, size_t n, T& magnitude) {
  using S = Simd<T>;
  typename S::V mx[4] = {S::set1(kNegInf<T>), S::set1(kNegInf<T>), S::set1(kNegInf<T>), S::set1(kNegInf<T>)};
  typename S::V mag[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  for_vectors<S>(
      n,
      [&](size_t i, int k) {
        const auto v = S::load(x + i);
        mx[k] = S::max(mx[k], v);
        mag[k] = S::max_magnitude(mag[k], v);
      },
      [&](size_t i, size_t r) {
        mx[0] = S::max(mx[0], S::load_tail(x + i, r, kNegInf<T>));
        mag[0] = S::max_magnitude(mag[0], S::load_tail(x + i, r, T(0)));
      });
  magnitude = max4<T>(mag);
  return max4<T>(mx);
}

// z = c (x - shift), the argument of every exp below: one subtraction when c == 1 (the common
// case, decided once per call), so the exact x - shift is not followed by a multiply; otherwise
// scaled_difference (math-inl.h), which does not overflow where c z is finite.
template <class T, bool kScaled>
__attribute__((always_inline)) inline typename Simd<T>::V shifted(typename Simd<T>::V x,
                                                                  typename Simd<T>::V shift,
                                                                  typename Simd<T>::V c) {
  if constexpr (kScaled) {
    return scaled_difference<T>(x, shift, c);
  } else {
    return Simd<T>::sub(x, shift);
  }
}

// c x, or x itself when c == 1 (kScaled false): the same bits without the multiply.
template <class T, bool kScaled>
__attribute__((always_inline)) inline typename Simd<T>::V scaled_by(typename Simd<T>::V x, typename Simd<T>::V c) {
  return kScaled ? Simd<T>::mul(x, c) : x;
}

// The exp argument: c (x - shift) (kShift) or c x.
template <class T, bool kScaled, bool kShift>
__attribute__((always_inline)) inline typename Simd<T>::V exp_argument(typename Simd<T>::V x,
                                                                       typename Simd<T>::V shift,
                                                                       typename Simd<T>::V c) {
  if constexpr (kShift) {
    return shifted<T, kScaled>(x, shift, c);
  } else {
    return scaled_by<T, kScaled>(x, c);
  }
}

// Calls f(std::bool_constant<c != 1>) so kernels compile a multiply-free variant for c == 1.
template <class T, class F>
__attribute__((always_inline)) inline auto with_scale(T c, F&& f) {
  return c == T(1) ? f(std::false_type{}) : f(std::true_type{});
}

// Work that rides along a hot loop, the one mechanism of the pipelined kernels: full(j, k) for the
// full vector at element j (accumulator slot k), after the loop's own work on it; tail(j, r) for
// the last r < N elements. The exp-bound loop then carries the load/store-bound passes of the
// neighbouring rows (SoftmaxRider, LogSoftmaxRider). NoRider does nothing.
struct NoRider {
  __attribute__((always_inline)) void full(size_t, int) {}
  __attribute__((always_inline)) void tail(size_t, size_t) {}
};

// Sum of exp(c(x - shift)) (exp(c x) without kShift) over one block, with the exp policy `exp`
// (math-inl.h); kStore also writes the values to y; `rider` rides along. Per element: 1 read
// (+ 1 write), 1 exp.
template <class T, bool kScaled, bool kStore, class Exp, bool kShift = true, class Rider = NoRider>
__attribute__((always_inline)) inline T exp_sum_block_with(Exp& exp, const T* x, T* y, size_t n, T shift, T c,
                                                           Rider rider = {}) {
  using S = Simd<T>;
  using V = typename S::V;
  const V vs = S::set1(shift), vc = S::set1(c);
  V acc[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  for_groups<S>(
      n,
      [&](size_t i, auto g) {
        constexpr int G = decltype(g)::value;
        V e[G];
        LOGITKIT_LOCKSTEP(k, G) e[k] = exp_argument<T, kScaled, kShift>(S::load(x + i + k * S::N), vs, vc);
        exp(e);
        LOGITKIT_LOCKSTEP(k, G) {
          if constexpr (kStore) S::store(y + i + k * S::N, e[k]);
          acc[k] = S::add(acc[k], e[k]);
          rider.full(i + k * S::N, k);
        }
      },
      [&](size_t i, size_t r) {
        const V e = vexp_tail<T>(exp_argument<T, kScaled, kShift>(S::load_tail(x + i, r, kNegInf<T>), vs, vc));
        if constexpr (kStore) S::store_tail(y + i, e, r);
        acc[0] = S::add(acc[0], e);
        rider.tail(i, r);
      });
  return S::reduce_add(sum4<T>(acc));
}

template <class T, bool kStore>
T exp_sum_impl(const T* x, T* y, size_t n, T shift, T c) {
  return with_scale(c, [&](auto scaled) {
    constexpr bool kScaled = decltype(scaled)::value;
    BlockSum<T> total;
    bool guarded = !kStore || disjoint(x, 1, n, 0, static_cast<const T*>(y), 0);  // see disjoint
    for_blocks<T>(n, [&](size_t b, size_t len) {
      total.add(with_guarded_exp<T>(
          [&](auto& exp) __attribute__((always_inline)) {
            return exp_sum_block_with<T, kScaled, kStore>(exp, x + b, kStore ? y + b : nullptr, len, shift, c);
          },
          guarded));
    });
    return T(total.value());
  });
}

template <class T>
T exp_store_sum(const T* x, T* y, size_t n, T shift, T c) {
  return exp_sum_impl<T, true>(x, y, n, shift, c);
}

template <class T>
T exp_sum(const T* x, size_t n, T shift, T c) {
  return exp_sum_impl<T, false>(x, nullptr, n, shift, c);
}

// y = exp(c x) and its sum, for a row that passed unshifted_exp_ok: the same bits as
// exp_store_sum(x, y, n, 0, c), without the subtraction and the range guard.
template <class T>
T exp_store_sum_unshifted(const T* x, T* y, size_t n, T c) {
  return with_scale(c, [&](auto scaled) {
    constexpr bool kScaled = decltype(scaled)::value;
    InRangeExp<T> exp;
    BlockSum<T> total;
    for_blocks<T>(n, [&](size_t b, size_t len) {
      total.add(exp_sum_block_with<T, kScaled, true, InRangeExp<T>, false>(exp, x + b, y + b, len, T(0), c));
    });
    return T(total.value());
  });
}

// The range and exp passes of three_pass_reload: y = exp(c (x - shift)) and its sum, with shift
// = 0 when the row passes unshifted_exp_ok, else its max (taken in the same read).
template <class T>
T reload_exp_store_sum(const T* x, T* y, size_t n, T c) {
  T magnitude;
  const T m = row_max_magnitude(x, n, magnitude);
  return unshifted_exp_ok(magnitude, c, n) ? exp_store_sum_unshifted(x, y, n, c) : exp_store_sum(x, y, n, m, c);
}

// y = s x: 1 read + 1 write, no exp; store-bound. Returns max y (for fix_dominant_entry).
template <class T, bool kStream>
T scale_impl(const T* x, T* y, size_t n, T s) {
  using S = Simd<T>;
  const auto vs = S::set1(s);
  TopOutput<T> top;
  for_vectors<S>(
      n,
      [&](size_t i, int k) {
        const auto u = S::mul(S::load(x + i), vs);
        put<S, kStream>(y + i, u);
        top.add(k, u);
      },
      [&](size_t i, size_t r) {
        const auto u = S::mul(S::load_tail(x + i, r, T(0)), vs);
        S::store_tail(y + i, u, r);
        top.add(0, u);
      });
  return top.value();
}

template <class T>
T scale(const T* x, T* y, size_t n, T s) {
  return scale_impl<T, false>(x, y, n, s);
}


// y = s exp(c(x - shift)): 1 read + 1 write, 1 exp per element.
template <class T>
void exp_scale_store(const T* x, T* y, size_t n, T shift, T c, T s) {
  using S = Simd<T>;
  using V = typename S::V;
  with_scale(c, [&](auto scaled) {
    constexpr bool kScaled = decltype(scaled)::value;
    const V vshift = S::set1(shift), vc = S::set1(c), vs = S::set1(s);
    for_groups<S>(
        n,
        [&](size_t i, auto g) {
          constexpr int G = decltype(g)::value;
          V e[G];
          LOGITKIT_LOCKSTEP(k, G) e[k] = shifted<T, kScaled>(S::load(x + i + k * S::N), vshift, vc);
          vexp_group<T, G>(e);
          LOGITKIT_LOCKSTEP(k, G) S::store(y + i + k * S::N, S::mul(e[k], vs));
        },
        [&](size_t i, size_t r) {
          const V e = vexp_tail<T>(shifted<T, kScaled>(S::load_tail(x + i, r, kNegInf<T>), vshift, vc));
          S::store_tail(y + i, S::mul(e, vs), r);
        });
  });
}

// Pass 1 of the Two-Pass softmax: per lane a (mantissa, exponent) accumulator; adding a term
// rescales both to the larger exponent, so nothing can overflow and no max pass is needed.
template <class T, bool kScaled>
ExtSum<T> extexp_sum_block(const T* x, size_t n, T c) {
  using S = Simd<T>;
  using V = typename S::V;
  using C = ExpConstants<T>;
  const auto vc = S::set1(c);
  const T kStartExp = -4 * C::kExtExpLimit;  // below every exponent an input can produce
  V mant[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  V expo[4] = {S::set1(kStartExp), S::set1(kStartExp), S::set1(kStartExp), S::set1(kStartExp)};
  typename S::M bad = S::lt(S::zero(), S::zero());
  auto accumulate = [&](V m, V e, int k) {
    V emax = S::max(expo[k], e);
    mant[k] = S::add(ldexp_nonpositive<T>(mant[k], S::sub(expo[k], emax)),
                     ldexp_nonpositive<T>(m, S::sub(e, emax)));
    expo[k] = emax;
  };
  for_groups<S>(
      n,
      [&](size_t i, auto g) {
        constexpr int G = decltype(g)::value;
        V m[G], e[G];
        LOGITKIT_LOCKSTEP(k, G) m[k] = S::load(x + i + k * S::N);
        vextexp_scaled_group<T, kScaled, G>(m, e, bad, vc);
        LOGITKIT_LOCKSTEP(k, G) accumulate(m[k], e[k], k);
      },
      [&](size_t i, size_t r) {
        V m[1] = {S::load_tail(x + i, r, kNegInf<T>)}, e[1];
        vextexp_scaled_group<T, kScaled, 1>(m, e, bad, vc);
        accumulate(m[0], e[0], 0);
      });
  V emax = S::max(S::max(expo[0], expo[1]), S::max(expo[2], expo[3]));
  T e = S::reduce_max(emax);
  V total = S::zero();
  for (int k = 0; k < 4; ++k)
    total = S::add(total, ldexp_nonpositive<T>(mant[k], S::sub(expo[k], S::set1(e))));
  return {S::reduce_add(total), e, !S::any(bad)};
}

// Block partials combined as a BlockSum mantissa with a shared exponent.
template <class T>
ExtSum<T> extexp_sum(const T* x, size_t n, T c) {
  BlockSum<T> mant;
  bool empty = true;
  T expo = T(0);
  bool ok = true;
  for_blocks<T>(n, [&](size_t b, size_t len) {
    ExtSum<T> p =
        with_scale(c, [&](auto scaled) { return extexp_sum_block<T, decltype(scaled)::value>(x + b, len, c); });
    ok = ok && p.ok;
    if (!(p.mant > T(0))) return;
    // exponent differences clamped before the int conversion: beyond -4096 the double scale is 0
    // anyway, and huge logits make the exponents differ by more than an int holds
    auto shift = [](T d) { return static_cast<int>(d < T(-4096) ? T(-4096) : d); };  // d <= 0
    if (empty || p.expo > expo) {
      if (!empty) mant.scale_pow2(shift(expo - p.expo));
      expo = p.expo;
      empty = false;
    }
    mant.add(std::ldexp(static_cast<double>(p.mant), shift(p.expo - expo)));
  });
  const double m = mant.value();
  return {T(m), expo, ok && m > 0};
}

// Pass 2 of the Two-Pass softmax: y = mant(x) / sum_mant * 2^(expo(x) - sum_expo).
template <class T, bool kStream, bool kScaled>
T extexp_store_impl(const T* x, T* y, size_t n, T c, T inv_mant, T expo) {
  using S = Simd<T>;
  using V = typename S::V;
  using C = ExpConstants<T>;
  const auto vc = S::set1(c), vinv = S::set1(inv_mant), vexpo = S::set1(expo);
  const auto lowest = S::set1(2 * C::kZeroExp);  // keeps ldexp_full in its domain; gives +0
  typename S::M bad = S::lt(S::zero(), S::zero());  // checked by extexp_sum already
  TopOutput<T> top;
  for_groups<S>(
      n,
      [&](size_t i, auto g) {
        constexpr int G = decltype(g)::value;
        V m[G], e[G];
        LOGITKIT_LOCKSTEP(k, G) m[k] = S::load(x + i + k * S::N);
        vextexp_scaled_group<T, kScaled, G>(m, e, bad, vc);
        LOGITKIT_LOCKSTEP(k, G) {
          const V u = ldexp_full<T>(S::mul(m[k], vinv), S::max(S::sub(e[k], vexpo), lowest));
          put<S, kStream>(y + i + k * S::N, u);
          top.add(k, u);
        }
      },
      [&](size_t i, size_t r) {
        V m[1] = {S::load_tail(x + i, r, T(0))}, e[1];
        vextexp_scaled_group<T, kScaled, 1>(m, e, bad, vc);
        const V u = ldexp_full<T>(S::mul(m[0], vinv), S::max(S::sub(e[0], vexpo), lowest));
        S::store_tail(y + i, u, r);
        top.add(0, S::load_tail(y + i, r, T(0)));  // u's lanes past the row hold exp(0)
      });
  return top.value();
}

// stream: non-temporal stores for outputs far larger than the caches (see split_for_streaming).
// Returns max y.
template <class T>
T extexp_store(const T* x, T* y, size_t n, T c, T inv_mant, T expo, bool stream) {
  T top = T(0);
  with_scale(c, [&](auto scaled) {
    constexpr bool kScaled = decltype(scaled)::value;
    if (!stream) {
      top = extexp_store_impl<T, false, kScaled>(x, y, n, c, inv_mant, expo);
      return;
    }
    split_for_streaming(y, n, [&](size_t b, size_t len, auto tag) {
      top = std::max(top, extexp_store_impl<T, decltype(tag)::value, kScaled>(x + b, y + b, len, c, inv_mant, expo));
    });
    Simd<T>::stream_fence();
  });
  return top;
}

// Online softmax: running per-lane max m and sum s of exp(c(x - m)); s is rescaled only for
// vectors that raise a lane's max. Starting m at the lowest finite value keeps -inf inputs at 0.
template <class T>
MaxSum<T> online_sum_block(const T* x, size_t n, T c) {
  using S = Simd<T>;
  using V = typename S::V;
  const auto vc = S::set1(c);
  const V lowest = S::set1(std::numeric_limits<T>::lowest());
  V m[4] = {lowest, lowest, lowest, lowest};
  V s[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  auto accumulate = [&](V v, int k) {
    if (S::any(S::gt(v, m[k]))) {
      V m_new = S::max(m[k], v);
      s[k] = S::mul(s[k], vexp<T>(scaled_difference<T>(m[k], m_new, vc)));
      m[k] = m_new;
    }
    s[k] = S::add(s[k], vexp<T>(scaled_difference<T>(v, m[k], vc)));
  };
  for_vectors<S>(
      n, [&](size_t i, int k) { accumulate(S::load(x + i), k); },
      [&](size_t i, size_t r) { accumulate(S::load_tail(x + i, r, kNegInf<T>), 0); });
  T mx = max4<T>(m);
  V total = S::zero();
  for (int k = 0; k < 4; ++k)
    total = S::add(total, S::mul(s[k], vexp<T>(scaled_difference<T>(m[k], S::set1(mx), vc))));
  return {mx, S::reduce_add(total)};
}

// Block partials (max, sum) merged with the same rescaling rule, the running sum kept in double.
template <class T>
MaxSum<T> online_sum(const T* x, size_t n, T c) {
  T mx = std::numeric_limits<T>::lowest();
  BlockSum<T> sum;
  for_blocks<T>(n, [&](size_t b, size_t len) {
    MaxSum<T> p = online_sum_block(x + b, len, c);
    if (p.max > mx) {
      sum.scale(std::exp(scaled_difference_scalar(mx, p.max, c)));
      mx = p.max;
    }
    sum.add(p.sum * std::exp(scaled_difference_scalar(p.max, mx, c)));
  });
  return {mx, T(sum.value())};
}

// Sum of exp(c(x - shift)) over x != m, and the number of x == m. Keeping the max term (exactly
// 1 when shift == m) out of the sum lets callers use log1p and keep full relative precision.
template <class T, bool kWeighted, bool kScaled, class Exp, class Rider = NoRider>
__attribute__((always_inline)) inline UntiedSum<T> untied_sum_with(Exp& exp, const T* x, const T* b, size_t n, T m,
                                                                   T shift, T c, Rider rider = {}) {
  using S = Simd<T>;
  using V = typename S::V;
  const auto vm = S::set1(m), vs = S::set1(shift), vc = S::set1(c), one = S::set1(T(1));
  V sum[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  V tied[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  // e = exp(c(v - shift)) of vector v with weights w, accumulated into slot k.
  auto accumulate = [&](V v, V w, V e, int k) {
    auto tie = S::eq(v, vm);
    if constexpr (kWeighted) {
      // Zero weights drop the element entirely (even inf or NaN), as in SciPy.
      auto skip = S::mask_or(tie, S::eq(w, S::zero()));
      sum[k] = S::add(sum[k], S::select(skip, S::zero(), S::mul(e, w)));
    } else {
      sum[k] = S::add(sum[k], S::select(tie, S::zero(), e));
    }
    tied[k] = S::add(tied[k], S::select(tie, w, S::zero()));
  };
  for_groups<S>(
      n,
      [&](size_t i, auto g) {
        constexpr int G = decltype(g)::value;
        V v[G], e[G];
        LOGITKIT_LOCKSTEP(k, G) {
          v[k] = S::load(x + i + k * S::N);
          e[k] = shifted<T, kScaled>(v[k], vs, vc);
        }
        exp(e);
        LOGITKIT_LOCKSTEP(k, G) {
          accumulate(v[k], kWeighted ? S::load(b + i + k * S::N) : one, e[k], k);
          rider.full(i + k * S::N, k);
        }
      },
      [&](size_t i, size_t r) {
        // Lanes past r hold -inf, which never ties with a finite or +inf m (callers skip m = -inf),
        // so the unweighted tail can count every lane's weight as 1.
        V v = S::load_tail(x + i, r, kNegInf<T>);
        const V e = vexp_tail<T>(shifted<T, kScaled>(v, vs, vc));
        accumulate(v, kWeighted ? S::load_tail(b + i, r, T(0)) : one, e, 0);
        rider.tail(i, r);
      });
  return {S::reduce_add(sum4<T>(sum)), S::reduce_add(sum4<T>(tied))};
}

// untied_sum_with over a whole row in blocks, the block sums added by BlockSum. make_rider(scaled,
// i) gives the rider for the block at element i (see NoRider); on a guard failure only the sum
// is redone, the rider's work being done already.
template <class T, class MakeRider>
UntiedSum<T> untied_sum_riding(const T* x, const T* b, size_t n, T m, T shift, T c, MakeRider&& make_rider) {
  return with_scale(c, [&](auto scaled) {
    constexpr bool kScaled = decltype(scaled)::value;
    BlockSum<T> sum, tied;
    bool guarded = true;
    for_blocks<T>(n, [&](size_t i, size_t len) {
      auto rider = make_rider(scaled, i);
      auto block = [&](auto& exp, auto r) __attribute__((always_inline)) {
        return b ? untied_sum_with<T, true, kScaled>(exp, x + i, b + i, len, m, shift, c, r)
                 : untied_sum_with<T, false, kScaled>(exp, x + i, nullptr, len, m, shift, c, r);
      };
      auto with_rider = [&](auto& exp) __attribute__((always_inline)) { return block(exp, rider); };
      UntiedSum<T> u;
      if constexpr (std::is_same_v<decltype(rider), NoRider>) {
        u = with_guarded_exp<T>(with_rider, guarded);
      } else {
        auto sum_only = [&](auto& exp) __attribute__((always_inline)) { return block(exp, NoRider{}); };
        u = with_guarded_exp<T>(with_rider, sum_only, guarded);
      }
      sum.add(u.sum);
      tied.add(u.tied_weight);
    });
    return UntiedSum<T>{T(sum.value()), T(tied.value())};
  });
}

template <class T>
UntiedSum<T> untied_sum(const T* x, const T* b, size_t n, T m, T shift, T c) {
  return untied_sum_riding<T>(x, b, n, m, shift, c, [](auto, size_t) { return NoRider{}; });
}

// Max over the elements with a nonzero weight (the others do not take part, as in SciPy).
template <class T>
T weighted_max(const T* x, const T* b, size_t n) {
  using S = Simd<T>;
  const auto ninf = S::set1(kNegInf<T>);
  typename S::V acc[4] = {ninf, ninf, ninf, ninf};
  auto take = [&](typename S::V v, typename S::V w) {
    return S::select(S::eq(w, S::zero()), ninf, v);
  };
  for_vectors<S>(
      n, [&](size_t i, int k) { acc[k] = S::max(acc[k], take(S::load(x + i), S::load(b + i))); },
      [&](size_t i, size_t r) {
        acc[0] = S::max(acc[0], take(S::load_tail(x + i, r, kNegInf<T>), S::load_tail(b + i, r, T(0))));
      });
  return max4<T>(acc);
}

// c (x - shift) - offset, the value log_softmax stores (c == 1: no multiply, the same bits).
template <class T, bool kScaled>
__attribute__((always_inline)) inline typename Simd<T>::V shifted_log(typename Simd<T>::V x, typename Simd<T>::V shift,
                                                                      typename Simd<T>::V c,
                                                                      typename Simd<T>::V offset) {
  using S = Simd<T>;
  return S::sub(shifted<T, kScaled>(x, shift, c), offset);
}

template <class T, bool kStream>
void shift_store_impl(const T* x, T* y, size_t n, T shift, T c, T offset) {
  using S = Simd<T>;
  const auto vs = S::set1(shift), vc = S::set1(c), vo = S::set1(offset);
  with_scale(c, [&](auto scaled) {
    constexpr bool kScaled = decltype(scaled)::value;
    for_vectors<S>(
        n, [&](size_t i, int) { put<S, kStream>(y + i, shifted_log<T, kScaled>(S::load(x + i), vs, vc, vo)); },
        [&](size_t i, size_t r) {
          S::store_tail(y + i, shifted_log<T, kScaled>(S::load_tail(x + i, r, T(0)), vs, vc, vo), r);
        });
  });
}

template <class T>
void shift_store(const T* x, T* y, size_t n, T shift, T c, T offset) {
  shift_store_impl<T, false>(x, y, n, shift, c, offset);
}

// shift_store, with non-temporal stores for every whole cache line of y when kStream.
template <class T, bool kStream>
void shift_store_maybe_streamed(const T* x, T* y, size_t n, T shift, T c, T offset) {
  if constexpr (kStream) {
    split_for_streaming(y, n, [&](size_t b, size_t len, auto tag) {
      shift_store_impl<T, decltype(tag)::value>(x + b, y + b, len, shift, c, offset);
    });
  } else {
    shift_store(x, y, n, shift, c, offset);
  }
}

template <class T>
void softmax_row(const T* x, T* y, size_t n, T c, SoftmaxAlgorithm algorithm) {
  switch (algorithm) {
    case SoftmaxAlgorithm::kThreePassRecompute: {
      // Shifted by the max only where three_pass_reload would be (unshifted_exp_ok): as exact.
      T magnitude;
      const T m = row_max_magnitude(x, n, magnitude);
      const T shift = unshifted_exp_ok(magnitude, c, n) ? T(0) : m;
      exp_scale_store(x, y, n, shift, c, T(1) / exp_sum(x, n, shift, c));
      finish_dominant_entry(y, n);
      return;
    }
    case SoftmaxAlgorithm::kTwoPass: {
      ExtSum<T> s = extexp_sum(x, n, c);
      if (s.ok) {
        fix_dominant_entry(y, n, T(1), extexp_store(x, y, n, c, T(1) / s.mant, s.expo, false), y);
        return;
      }
      break;  // inputs outside the pair's range: the three-pass result is exact for them
    }
    case SoftmaxAlgorithm::kOnline: {
      MaxSum<T> s = online_sum(x, n, c);
      exp_scale_store(x, y, n, s.max, c, T(1) / s.sum);
      finish_dominant_entry(y, n);
      return;
    }
    default:
      break;
  }
  fix_dominant_entry(y, n, T(1), scale(y, y, n, T(1) / reload_exp_store_sum(x, y, n, c)), y);
}

// kStream: y written with non-temporal stores (log_softmax_rows_streamed), the same bits.
template <class T, bool kStream = false>
void log_softmax_row(const T* x, T* y, size_t n, T c) {
  T m = row_max(x, n);
  if (std::isfinite(m)) {
    shift_store_maybe_streamed<T, kStream>(x, y, n, m, c, log_sum_from_untied(untied_sum<T>(x, nullptr, n, m, m, c)));
  } else {  // +inf, -inf or NaN max: follow IEEE arithmetic on the unshifted values, as torch
    shift_store_maybe_streamed<T, kStream>(x, y, n, T(0), c, std::log(exp_sum(x, n, T(0), c)));
  }
}

// SciPy's logsumexp(x, b=b, return_sign=...) for one row, with the max term kept out of the sum.
template <class T>
void logsumexp_row(const T* x, const T* b, size_t n, T* out, T* sign) {
  const T m = b ? weighted_max(x, b, n) : row_max(x, n);
  // Also summed when m == -inf: the max reduction can drop a NaN, which the sum still shows.
  const UntiedSum<T> u = untied_sum<T>(x, b, n, m, std::isfinite(m) ? m : T(0), T(1));
  finish_logsumexp<T>(m, u, out, sign);
}

// Whether a row whose outputs are exp(z_j) * inv, every z_j at most z_top, can have an output at
// kDominantThreshold: the pipelined rows' cheap test, so that only those rows take the max pass
// of finish_dominant_entry (its one max per vector would slow the fused loop, which is bound by
// its arithmetic). Shifted rows have z_top = 0 (their max term is exactly 1): then exact;
// unshifted rows bound z_top by c max|x|.
template <class T>
bool may_dominate(T inv, T z_top) {
  return static_cast<double>(inv) * std::exp(static_cast<double>(z_top)) >= kDominantThreshold<double> * (1 - 1e-6);
}

// The rider of softmax_rows_pipelined: row r+1's range pass (max |xnext| into mag; with kShift
// also its max into mx, as the next row is likely shifted too) and row r-1's scale pass (yprev *=
// inv_prev), at the element offset of the block whose exp is being summed. With the block's own
// work, per element: 3 reads + 2 writes, 1 exp.
template <class T, bool kShift, bool kNext, bool kScalePrev>
struct SoftmaxRider {
  using S = Simd<T>;
  using V = typename S::V;
  const T* xnext;
  V (&mag)[4];
  V (&mx)[4];
  T* yprev;
  V inv_prev;

  __attribute__((always_inline)) void full(size_t j, int k) {
    if constexpr (kNext) {
      const V v = S::load(xnext + j);
      mag[k] = S::max_magnitude(mag[k], v);
      if constexpr (kShift) mx[k] = S::max(mx[k], v);
    }
    if constexpr (kScalePrev) S::store(yprev + j, S::mul(S::load(yprev + j), inv_prev));
  }
  __attribute__((always_inline)) void tail(size_t j, size_t r) {
    if constexpr (kNext) {
      mag[0] = S::max_magnitude(mag[0], S::load_tail(xnext + j, r, T(0)));
      if constexpr (kShift) mx[0] = S::max(mx[0], S::load_tail(xnext + j, r, kNegInf<T>));
    }
    if constexpr (kScalePrev) S::store_tail(yprev + j, S::mul(S::load_tail(yprev + j, r, T(0)), inv_prev), r);
  }
};

// three_pass_reload over several rows, software-pipelined: row r's exp pass (compute-bound)
// carries row r+1's range pass (row_magnitude) and row r-1's scale pass (load/store-bound), so in
// steady state a row costs one fused loop instead of three passes. Rows that pass
// unshifted_exp_ok (logits within +-64) need no max; the others (larger logits, -inf, NaN) get
// it from the previous row's loop when that row was shifted too (its rider then takes the max
// as well), else from one more read of x. Per element: reads x twice and y once, writes y twice (as
// three_pass_reload), 1 exp; compute-bound while its working set (x and y of 3 rows) stays in L2.
// Bitwise equal to softmax_row(kThreePassReload) row by row: the range, the max and the blocked
// sums take the same per-slot accumulators in the same order.
template <class T, bool kScaled>
void softmax_rows_pipelined(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c) {
  using S = Simd<T>;
  using V = typename S::V;
  T magnitude, inv_prev = T(0);
  T next_max = row_max_magnitude(x, n, magnitude);  // the first row's: one read of x for both
  bool next_max_known = true;
  bool prev_may_dominate = false;
  const bool guard_ok = disjoint(x, rows, n, ldx, static_cast<const T*>(y), ldy);  // in place: see disjoint
  for (size_t r = 0; r < rows; ++r) {
    const T* xr = x + ptrdiff_t(r) * ldx;
    T* yr = y + ptrdiff_t(r) * ldy;
    const bool next = r + 1 < rows, prev = r > 0;
    const T* xn = next ? xr + ldx : nullptr;
    T* yp = prev ? yr - ldy : nullptr;
    const bool unshifted = unshifted_exp_ok(magnitude, c, n);
    const T m = unshifted ? T(0) : (next_max_known ? next_max : row_max(xr, n));
    V mag[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
    V mx[4] = {S::set1(kNegInf<T>), S::set1(kNegInf<T>), S::set1(kNegInf<T>), S::set1(kNegInf<T>)};
    BlockSum<T> total;
    bool guarded = guard_ok;  // see with_guarded_exp
    auto run = [&](auto shift, auto has_next, auto has_prev) {
      constexpr bool kShift = decltype(shift)::value;
      for_blocks<T>(n, [&](size_t b, size_t len) {
        auto fused = [&](auto& exp) __attribute__((always_inline)) {
          using Rider = SoftmaxRider<T, kShift, decltype(has_next)::value, decltype(has_prev)::value>;
          return exp_sum_block_with<T, kScaled, true, std::remove_reference_t<decltype(exp)>, kShift>(
              exp, xr + b, yr + b, len, m, c, Rider{xn + (next ? b : 0), mag, mx, yp + (prev ? b : 0), S::set1(inv_prev)});
        };
        if constexpr (kShift) {
          // On a guard failure the range and scale parts are done: redo the exp part alone.
          auto exp_part = [&](auto& exp) __attribute__((always_inline)) {
            return exp_sum_block_with<T, kScaled, true>(exp, xr + b, yr + b, len, m, c);
          };
          total.add(with_guarded_exp<T>(fused, exp_part, guarded));
        } else {
          InRangeExp<T> exp;
          total.add(fused(exp));
        }
      });
    };
    auto run_rows = [&](auto has_next, auto has_prev) {
      if (unshifted) {
        run(std::false_type{}, has_next, has_prev);
      } else {
        run(std::true_type{}, has_next, has_prev);
      }
    };
    if (next && prev) {
      run_rows(std::true_type{}, std::true_type{});
    } else if (next) {
      run_rows(std::true_type{}, std::false_type{});
    } else if (prev) {
      run_rows(std::false_type{}, std::true_type{});
    } else {
      run_rows(std::false_type{}, std::false_type{});
    }
    if (prev && prev_may_dominate) finish_dominant_entry(yp, n);  // scaled just now, in cache
    inv_prev = T(1) / T(total.value());
    prev_may_dominate = may_dominate(inv_prev, unshifted ? c * magnitude : T(0));
    magnitude = max4<T>(mag);
    next_max_known = !unshifted;  // a shifted row's rider took the next row's max (as row_max)
    if (next_max_known) next_max = max4<T>(mx);
  }
  T* ylast = y + ptrdiff_t(rows - 1) * ldy;
  fix_dominant_entry(ylast, n, T(1), scale(ylast, ylast, n, inv_prev), ylast);
}

// The range and exp passes of three_pass_reload on R rows of at most kSumBlock<T> elements (one
// sum block) in lockstep: y = exp(c x) and sum[r], the row's sum. Each row takes the operations
// of softmax_row(kThreePassReload) in the same order (slots, the block's sum), so the same bits.
// Returns false when a row needs the max shift (unshifted_exp_ok): without kSpeculate before
// writing anything; with kSpeculate (only for x and y disjoint) after taking exp(c x) into y in
// the same loop that takes max |x|, which saves a read and a dependency on the range check, and
// leaves y for the caller's per-row kernel to overwrite.
template <class T, bool kScaled, int R, bool kSpeculate>
__attribute__((always_inline)) inline bool exp_store_sums_lockstep(const T* x, T* y, size_t n, ptrdiff_t ldx,
                                                                   ptrdiff_t ldy, T c, T (&sum)[R]) {
  using S = Simd<T>;
  using V = typename S::V;
  V mag[R][4];
  LOGITKIT_LOCKSTEP(r, R) mag[r][0] = mag[r][1] = mag[r][2] = mag[r][3] = S::zero();
  // unshifted_exp_ok(max4(mag[r]), c, n) for every row, without the horizontal max: rounding is
  // monotonic, so every lane's |x| c <= limit exactly when the max's is (lanes never hold NaN).
  auto range_ok = [&] {
    typename S::M out = S::not_le(S::zero(), S::zero());  // none
    LOGITKIT_LOCKSTEP(r, R) {
      const V m = scaled_by<T, kScaled>(S::max(S::max(mag[r][0], mag[r][1]), S::max(mag[r][2], mag[r][3])), S::set1(c));
      out = S::mask_or(out, S::not_le(m, S::set1(kUnshiftedExpLimit<T>)));
    }
    return !S::any(out) && uint64_t(n) <= kUnshiftedExpMaxElements;
  };
  if constexpr (!kSpeculate) {
    for_vectors<S>(
        n, [&](size_t i, int k) { LOGITKIT_LOCKSTEP(r, R) mag[r][k] = S::max_magnitude(mag[r][k], S::load(x + ptrdiff_t(r) * ldx + i)); },
        [&](size_t i, size_t rem) {
          LOGITKIT_LOCKSTEP(r, R) mag[r][0] = S::max_magnitude(mag[r][0], S::load_tail(x + ptrdiff_t(r) * ldx + i, rem, T(0)));
        });
    if (!range_ok()) return false;
  }
  const V vc = S::set1(c);
  V acc[R][4];
  LOGITKIT_LOCKSTEP(r, R) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = S::zero();
  InRangeExp<T> exp;
  for_groups<S>(
      n,
      [&](size_t i, auto g) {
        constexpr int G = decltype(g)::value;
        LOGITKIT_LOCKSTEP(r, R) {
          V v[G], e[G];
          LOGITKIT_LOCKSTEP(k, G) {
            v[k] = S::load(x + ptrdiff_t(r) * ldx + i + k * S::N);
            e[k] = scaled_by<T, kScaled>(v[k], vc);
          }
          exp(e);
          LOGITKIT_LOCKSTEP(k, G) {
            if constexpr (kSpeculate) mag[r][k] = S::max_magnitude(mag[r][k], v[k]);
            S::store(y + ptrdiff_t(r) * ldy + i + k * S::N, e[k]);
            acc[r][k] = S::add(acc[r][k], e[k]);
          }
        }
      },
      [&](size_t i, size_t rem) {
        LOGITKIT_LOCKSTEP(r, R) {
          const V e = vexp_tail<T>(scaled_by<T, kScaled>(S::load_tail(x + ptrdiff_t(r) * ldx + i, rem, kNegInf<T>), vc));
          if constexpr (kSpeculate) mag[r][0] = S::max_magnitude(mag[r][0], S::load_tail(x + ptrdiff_t(r) * ldx + i, rem, T(0)));
          S::store_tail(y + ptrdiff_t(r) * ldy + i, e, rem);
          acc[r][0] = S::add(acc[r][0], e);
        }
      });
  if constexpr (kSpeculate) {
    if (!range_ok()) return false;
  }
  LOGITKIT_LOCKSTEP(r, R) sum[r] = S::reduce_add(sum4<T>(acc[r]));
  return true;
}

// y *= inv[r] for R rows in lockstep: the scale pass.
template <class T, int R>
__attribute__((always_inline)) inline void scale_lockstep(T* y, size_t n, ptrdiff_t ldy, const T* inv) {
  using S = Simd<T>;
  using V = typename S::V;
  V vi[R];
  TopOutput<T> top[R];
  LOGITKIT_LOCKSTEP(r, R) vi[r] = S::set1(inv[r]);
  for_vectors<S>(
      n,
      [&](size_t i, int k) {
        LOGITKIT_LOCKSTEP(r, R) {
          const V u = S::mul(S::load(y + ptrdiff_t(r) * ldy + i), vi[r]);
          S::store(y + ptrdiff_t(r) * ldy + i, u);
          top[r].add(k, u);
        }
      },
      [&](size_t i, size_t rem) {
        LOGITKIT_LOCKSTEP(r, R) {
          const V u = S::mul(S::load_tail(y + ptrdiff_t(r) * ldy + i, rem, T(0)), vi[r]);
          S::store_tail(y + ptrdiff_t(r) * ldy + i, u, rem);
          top[r].add(0, u);
        }
      });
  LOGITKIT_LOCKSTEP(r, R) fix_dominant_entry(y + ptrdiff_t(r) * ldy, n, T(1), top[r].value(), y + ptrdiff_t(r) * ldy);
}

// Short rows (at most kSumBlock<T> elements) run two at a time in lockstep where that pays,
// one at a time otherwise. lockstep(r, R) runs rows r..r+R-1 (R an integral_constant) or returns
// false, leaving them to alone(r), the per-row kernel (which rewrites all of y). Measured for softmax
// per row (AVX-512, one thread, rows in L1): pairs are 15-30% faster at 64-192 floats, equal at
// 256, slower at 32 and 384+; and from 256 floats read from memory twice as slow, as the two
// rows' streams compete.
template <class T>
constexpr bool short_rows_in_pairs(size_t n) {
  return n >= 4 * Simd<T>::N && n * sizeof(T) <= 512;
}

template <class T, class Lockstep, class Alone>
__attribute__((always_inline)) inline void for_short_rows(size_t rows, size_t n, Lockstep&& lockstep, Alone&& alone) {
  size_t r = 0;
  if (short_rows_in_pairs<T>(n)) {
    for (; r + 2 <= rows; r += 2) {
      if (lockstep(r, std::integral_constant<int, 2>{})) continue;
      alone(r);
      alone(r + 1);
    }
  }
  for (; r < rows; ++r) {
    if (!lockstep(r, std::integral_constant<int, 1>{})) alone(r);
  }
}

// Short rows run in blocks of up to one vector of rows, spanning at most kShortBlockBytes: first
// each row's sums (for_short_rows: pairs in lockstep where that pays), then the block's
// reciprocals (softmax) or logs (log_softmax, logsumexp) in one vector operation, then the rows'
// last pass. A row on its own cannot hide its chain of reductions (horizontal sum, then a
// division or a 40-operation log1p, then the stores that wait on it); a block's rows have
// independent chains. Measured on one thread (4096x128): logsumexp -32% and log_softmax -23%
// against a glibc log1p per row. A row the lockstep sums refuse (max not finite, exp out of
// range) runs alone, on the per-row kernel, in its place. ShortRowSums holds a block's sums.
constexpr size_t kShortBlockBytes = 8192;  // the block's x (or y) stays in L1 for the last pass

template <class T>
struct ShortRowSums {
  static constexpr size_t kRows = Simd<T>::N;              // a block's rows: one lane each
  static constexpr size_t kSlots = kRows < 2 ? 2 : kRows;  // room for a pair (never used by the 1-lane backend)
  T max[kSlots], sum[kSlots], tied[kSlots];
  bool ok[kSlots];  // false: the row ran alone

  static size_t block_rows(size_t n) { return std::clamp<size_t>(kShortBlockBytes / (n * sizeof(T)), 1, kRows); }
};

// The last pass over the rows of a block the sums computed (ok): pass(r, R) for rows r..r+R-1,
// R an integral_constant, in pairs where `pairs` and both rows are computed.
template <class T, class Pass>
__attribute__((always_inline)) inline void for_computed_rows(const ShortRowSums<T>& s, size_t rows, bool pairs,
                                                             Pass&& pass) {
  for (size_t r = 0; r < rows;) {
    if (!s.ok[r]) {
      r += 1;
    } else if (pairs && r + 1 < rows && s.ok[r + 1]) {
      pass(r, std::integral_constant<int, 2>{});
      r += 2;
    } else {
      pass(r, std::integral_constant<int, 1>{});
      r += 1;
    }
  }
}

// three_pass_reload on rows of at most kSumBlock<T> elements.
template <class T>
void softmax_rows_short(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c) {
  with_scale(c, [&](auto scaled) {
    constexpr bool kScaled = decltype(scaled)::value;
    using S = Simd<T>;
    const size_t block = ShortRowSums<T>::block_rows(n);
    const bool pairs = short_rows_in_pairs<T>(n);
    ShortRowSums<T> s{};
    T inv[ShortRowSums<T>::kRows];
    // Single rows speculate (see exp_store_sums_lockstep) unless y overlaps x; pairs gain nothing by it.
    auto run = [&](auto may_speculate) {
      for (size_t r0 = 0; r0 < rows; r0 += block) {
        const size_t nb = std::min(block, rows - r0);
        const T* xb = x + ptrdiff_t(r0) * ldx;
        T* yb = y + ptrdiff_t(r0) * ldy;
        for_short_rows<T>(
            nb, n,
            [&](size_t r, auto R) {
              constexpr int kRows = decltype(R)::value;
              constexpr bool kSpeculate = decltype(may_speculate)::value && kRows == 1;
              T sum[kRows];
              if (!exp_store_sums_lockstep<T, kScaled, kRows, kSpeculate>(xb + ptrdiff_t(r) * ldx, yb + ptrdiff_t(r) * ldy, n, ldx, ldy, c,
                                                                          sum))
                return false;
              LOGITKIT_LOCKSTEP(q, kRows) {
                s.sum[r + q] = sum[q];
                s.ok[r + q] = true;
              }
              return true;
            },
            [&](size_t r) {
              softmax_row(xb + ptrdiff_t(r) * ldx, yb + ptrdiff_t(r) * ldy, n, c, SoftmaxAlgorithm::kThreePassReload);
              s.ok[r] = false;
              s.sum[r] = T(1);
            });
        if (nb == 1) {  // softmax_row's 1 / sum (a vector load of a just-stored lane would stall)
          inv[0] = T(1) / s.sum[0];
        } else {
          S::store(inv, S::div(S::set1(T(1)), S::load_tail(s.sum, nb, T(1))));
        }
        for_computed_rows(s, nb, pairs, [&](size_t r, auto R) {
          scale_lockstep<T, decltype(R)::value>(yb + ptrdiff_t(r) * ldy, n, ldy, inv + r);
        });
      }
    };
    if (disjoint(x, rows, n, ldx, y, ldy)) {
      run(std::true_type{});
    } else {
      run(std::false_type{});
    }
  });
}

// Every path rewrites its rows' dominant entries (fix_dominant_entry) from its last pass's max.
template <class T>
void softmax_rows(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c,
                  SoftmaxAlgorithm algorithm) {
  if (algorithm == SoftmaxAlgorithm::kThreePassReload && rows > 1 && pipelines_rows(n, sizeof(T))) {
    with_scale(c, [&](auto scaled) {
      softmax_rows_pipelined<T, decltype(scaled)::value>(x, y, rows, n, ldx, ldy, c);
    });
  } else if (algorithm == SoftmaxAlgorithm::kThreePassReload && n <= kSumBlock<T>) {
    softmax_rows_short(x, y, rows, n, ldx, ldy, c);
  } else {
    for (size_t r = 0; r < rows; ++r) softmax_row(x + ptrdiff_t(r) * ldx, y + ptrdiff_t(r) * ldy, n, c, algorithm);
  }
}

// dst[0, len) = src[0, len), every whole cache line of dst written with a non-temporal store.
template <class T>
void stream_copy(const T* src, T* dst, size_t len) {
  using S = Simd<T>;
  split_for_streaming(dst, len, [&](size_t b, size_t l, auto tag) {
    for_vectors<S>(
        l, [&](size_t i, int) { put<S, decltype(tag)::value>(dst + b + i, S::load(src + b + i)); },
        [&](size_t i, size_t rem) { S::store_tail(dst + b + i, S::load_tail(src + b + i, rem, T(0)), rem); });
  });
}

// Rows of at most kSumBlock<T> elements for outputs beyond the last-level cache:
// rows_kernel(x, buf, count, ldx, ld_buf) computes streamed_tile_rows(n) rows at a time into a
// line-aligned L1 tile, which is then streamed to y. Contiguous y: a line that two tiles share
// (at NumPy's 16-byte offset, every tile boundary) is carried: the first tile's part waits just
// before the tile, and the line is streamed whole with the next tile. Written with a plain store
// instead, that line's read-for-ownership held up every later store (x86 commits stores in
// order): at 65536x128 on two threads, 2.9 ms against 2.1 with y aligned. Only the first and
// last line of a call, where y may share a line with other data, are stored plainly. The tile
// itself stays aligned, so the kernel's stores never split a line; the copy's loads do instead.
// scratch: streamed_scratch_elements(n).
template <class T, class RowsKernel>
void streamed_short_rows(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T* scratch,
                         RowsKernel&& rows_kernel) {
  const size_t tile = streamed_tile_rows<T>(n);
  const bool carry = ldy == static_cast<ptrdiff_t>(n) && reinterpret_cast<uintptr_t>(y) % sizeof(T) == 0;
  // One line for the carried part, then the tile, both line-aligned.
  T* buf = scratch + ((64 - reinterpret_cast<uintptr_t>(scratch) % 64) % 64) / sizeof(T) + 64 / sizeof(T);
  size_t carried = 0;  // elements of y's line before the tile's first element, at buf[-carried, 0)
  for (size_t r = 0; r < rows; r += tile) {
    const size_t count = rows - r < tile ? rows - r : tile;
    T* yt = y + ptrdiff_t(r) * ldy;
    rows_kernel(x + ptrdiff_t(r) * ldx, buf, count, static_cast<ptrdiff_t>(n));
    if (!carry) {
      for (size_t q = 0; q < count; ++q) stream_copy(buf + q * n, yt + ptrdiff_t(q) * ldy, n);
      continue;
    }
    // [from, to) of the tile, extended back over the carried part of its first line (not on the
    // call's first line, which may hold other data) and cut at its last line boundary unless it
    // is the call's last tile.
    const auto lead = static_cast<ptrdiff_t>((reinterpret_cast<uintptr_t>(yt) % 64) / sizeof(T));
    const auto len = static_cast<ptrdiff_t>(count * n);
    const bool last = r + count == rows;
    const ptrdiff_t from = static_cast<ptrdiff_t>(carried) == lead ? -lead : 0;
    const auto end_part = static_cast<ptrdiff_t>((reinterpret_cast<uintptr_t>(yt + len) % 64) / sizeof(T));
    const ptrdiff_t to = last ? len : len - end_part;
    if (to > from) stream_copy(buf + from, yt + from, static_cast<size_t>(to - from));
    carried = last ? 0 : static_cast<size_t>(end_part);
    std::memcpy(buf - carried, buf + len - carried, carried * sizeof(T));
  }
}

// three_pass_reload for outputs far beyond the last-level cache, writing y with non-temporal
// stores so memory sees one read of x and one write of y (8 bytes per float32 element, as a copy;
// a plain store would first read each line of y). Memory-bound: a copy sets the roof. Rows of one
// sum block run softmax_rows_short in tiles (streamed_short_rows). Longer rows take their exp into
// scratch and stream the scale pass. Bitwise equal to softmax_row(kThreePassReload).
// scratch: streamed_scratch_elements(n).
template <class T>
void softmax_rows_streamed(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c,
                           T* scratch) {
  using S = Simd<T>;
  if (n <= kSumBlock<T>) {
    streamed_short_rows(x, y, rows, n, ldx, ldy, scratch, [&](const T* xt, T* buf, size_t count, ptrdiff_t ldb) {
      softmax_rows_short(xt, buf, count, n, ldx, ldb, c);
    });
    S::stream_fence();
  } else {
    for (size_t r = 0; r < rows; ++r) {
      const T* xr = x + ptrdiff_t(r) * ldx;
      T* yr = y + ptrdiff_t(r) * ldy;
      const T inv = T(1) / reload_exp_store_sum(xr, scratch, n, c);
      T top = T(0);
      split_for_streaming(yr, n, [&](size_t b, size_t len, auto tag) {
        top = std::max(top, scale_impl<T, decltype(tag)::value>(scratch + b, yr + b, len, inv));
      });
      S::stream_fence();  // the streamed row is complete before its dominant entry is rewritten
      fix_dominant_entry<T>(scratch, n, inv, top, yr);  // the outputs, as the scale pass formed them
    }
  }
}

// The rider of log_softmax_rows_pipelined: row r+1's max pass (as row_max: slot k, the same
// order) and row r-1's shift-store pass, at the element offset of the block being summed.
template <class T, bool kScaled, bool kMaxNext, bool kShiftPrev>
struct LogSoftmaxRider {
  using S = Simd<T>;
  using V = typename S::V;
  const T* xnext;
  V (&mx)[4];
  const T* xprev;
  T* yprev;
  V shift_prev, c, lse_prev;

  __attribute__((always_inline)) void full(size_t j, int k) {
    if constexpr (kMaxNext) mx[k] = S::max(mx[k], S::load(xnext + j));
    if constexpr (kShiftPrev) S::store(yprev + j, shifted_log<T, kScaled>(S::load(xprev + j), shift_prev, c, lse_prev));
  }
  __attribute__((always_inline)) void tail(size_t j, size_t r) {
    if constexpr (kMaxNext) mx[0] = S::max(mx[0], S::load_tail(xnext + j, r, kNegInf<T>));
    if constexpr (kShiftPrev)
      S::store_tail(yprev + j, shifted_log<T, kScaled>(S::load_tail(xprev + j, r, T(0)), shift_prev, c, lse_prev), r);
  }
};

// log_softmax over several rows, software-pipelined as softmax_rows_pipelined: row r's untied sum
// (FMA-bound) carries row r+1's max pass and row r-1's shift-store pass (load/store-bound), so in
// steady state a row costs one fused loop instead of three passes. Per element: reads x three
// times (from L2 after the first), writes y once, 1 exp. A row whose max is not finite takes
// log_softmax_row's passes. Bitwise equal to log_softmax_row row by row.
template <class T>
void log_softmax_rows_pipelined(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c) {
  using S = Simd<T>;
  using V = typename S::V;
  T m = row_max(x, n);
  bool prev = false;  // row r-1 waits for its shift-store pass
  T m_prev = T(0), lse_prev = T(0);
  for (size_t r = 0; r < rows; ++r) {
    const T* xr = x + ptrdiff_t(r) * ldx;
    T* yr = y + ptrdiff_t(r) * ldy;
    const bool next = r + 1 < rows;
    if (!std::isfinite(m)) {  // see log_softmax_row: no fusing for this row
      if (prev) shift_store(xr - ldx, yr - ldy, n, m_prev, c, lse_prev);
      log_softmax_row(xr, yr, n, c);
      prev = false;
      if (next) m = row_max(xr + ldx, n);
      continue;
    }
    V mx[4] = {S::set1(kNegInf<T>), S::set1(kNegInf<T>), S::set1(kNegInf<T>), S::set1(kNegInf<T>)};
    auto run = [&](auto has_next, auto has_prev) {
      return untied_sum_riding<T>(xr, nullptr, n, m, m, c, [&](auto scaled, size_t b) {
        return LogSoftmaxRider<T, decltype(scaled)::value, decltype(has_next)::value, decltype(has_prev)::value>{
            next ? xr + ldx + b : nullptr, mx, prev ? xr - ldx + b : nullptr, prev ? yr - ldy + b : nullptr,
            S::set1(m_prev), S::set1(c), S::set1(lse_prev)};
      });
    };
    UntiedSum<T> u;
    if (next && prev) {
      u = run(std::true_type{}, std::true_type{});
    } else if (next) {
      u = run(std::true_type{}, std::false_type{});
    } else if (prev) {
      u = run(std::false_type{}, std::true_type{});
    } else {
      u = run(std::false_type{}, std::false_type{});
    }
    m_prev = m;
    lse_prev = log_sum_from_untied(u);
    prev = true;
    if (next) m = max4<T>(mx);
  }
  if (prev) shift_store(x + ptrdiff_t(rows - 1) * ldx, y + ptrdiff_t(rows - 1) * ldy, n, m_prev, c, lse_prev);
}

// row_max and untied_sum(x, nullptr, n, m, m, c), the sums of log_softmax_row and logsumexp_row,
// for R rows of at most kSumBlock<T> elements in lockstep (see softmax_rows_lockstep): the same
// operations in the same order per row, so the same bits. False when a row's max is not finite,
// or an exp argument is out of the guarded table exp's range: the caller then takes the per-row
// kernels, which handle both.
template <class T, bool kScaled, int R>
__attribute__((always_inline)) inline bool untied_sums_lockstep(const T* x, size_t n, ptrdiff_t ldx, T c, T (&m)[R],
                                                                UntiedSum<T> (&u)[R]) {
  using S = Simd<T>;
  using V = typename S::V;
  V mx[R][4];
  LOGITKIT_LOCKSTEP(r, R) mx[r][0] = mx[r][1] = mx[r][2] = mx[r][3] = S::set1(kNegInf<T>);
  for_vectors<S>(
      n, [&](size_t i, int k) { LOGITKIT_LOCKSTEP(r, R) mx[r][k] = S::max(mx[r][k], S::load(x + ptrdiff_t(r) * ldx + i)); },
      [&](size_t i, size_t rem) {
        LOGITKIT_LOCKSTEP(r, R) mx[r][0] = S::max(mx[r][0], S::load_tail(x + ptrdiff_t(r) * ldx + i, rem, kNegInf<T>));
      });
  bool finite = true;
  LOGITKIT_LOCKSTEP(r, R) {
    m[r] = max4<T>(mx[r]);
    finite = finite & std::isfinite(m[r]);
  }
  if (!finite) return false;
  const V vc = S::set1(c), one = S::set1(T(1));
  V vm[R], sum[R][4], tied[R][4];
  LOGITKIT_LOCKSTEP(r, R) {
    vm[r] = S::set1(m[r]);
    sum[r][0] = sum[r][1] = sum[r][2] = sum[r][3] = S::zero();
    tied[r][0] = tied[r][1] = tied[r][2] = tied[r][3] = S::zero();
  }
  auto accumulate = [&](int r, V v, V e, int k) __attribute__((always_inline)) {  // as untied_sum_with
    const auto tie = S::eq(v, vm[r]);
    sum[r][k] = S::add(sum[r][k], S::select(tie, S::zero(), e));
    tied[r][k] = S::add(tied[r][k], S::select(tie, one, S::zero()));
  };
  auto run = [&](auto& exp) __attribute__((always_inline)) {
    for_groups<S>(
        n,
        [&](size_t i, auto g) {
          constexpr int G = decltype(g)::value;
          LOGITKIT_LOCKSTEP(r, R) {
            V v[G], e[G];
            LOGITKIT_LOCKSTEP(k, G) {
              v[k] = S::load(x + ptrdiff_t(r) * ldx + i + k * S::N);
              e[k] = shifted<T, kScaled>(v[k], vm[r], vc);
            }
            exp(e);
            LOGITKIT_LOCKSTEP(k, G) accumulate(r, v[k], e[k], k);
          }
        },
        [&](size_t i, size_t rem) {
          LOGITKIT_LOCKSTEP(r, R) {
            const V v = S::load_tail(x + ptrdiff_t(r) * ldx + i, rem, kNegInf<T>);
            accumulate(r, v, vexp_tail<T>(shifted<T, kScaled>(v, vm[r], vc)), 0);
          }
        });
  };
  if constexpr (kTableExp<T>) {
    GuardedExp<T> exp;
    run(exp);
    if (!exp.ok()) return false;
  } else {
    CheckedExp<T> exp;
    run(exp);
  }
  LOGITKIT_LOCKSTEP(r, R) u[r] = UntiedSum<T>{S::reduce_add(sum4<T>(sum[r])), S::reduce_add(sum4<T>(tied[r]))};
  return true;
}

// The max and untied sum of each row of a block (log_softmax, logsumexp): rows <= ShortRowSums<T>::kRows.
// alone(r) runs a refused row r on the per-row kernel, in its place.
template <class T, bool kScaled, class Alone>
__attribute__((always_inline)) inline void short_row_sums(const T* x, size_t rows, size_t n, ptrdiff_t ldx, T c,
                                                          ShortRowSums<T>& s, Alone&& alone) {
  for_short_rows<T>(
      rows, n,
      [&](size_t r, auto R) {
        constexpr int kRows = decltype(R)::value;
        T m[kRows];
        UntiedSum<T> u[kRows];
        if (!untied_sums_lockstep<T, kScaled, kRows>(x + ptrdiff_t(r) * ldx, n, ldx, c, m, u)) return false;
        LOGITKIT_LOCKSTEP(q, kRows) {
          s.max[r + q] = m[q];
          s.sum[r + q] = u[q].sum;
          s.tied[r + q] = u[q].tied_weight;
          s.ok[r + q] = true;
        }
        return true;
      },
      [&](size_t r) {
        alone(r);
        s.ok[r] = false;
        s.sum[r] = T(0);
        s.tied[r] = T(1);
      });
}

// log_sum_from_untied of each row of the block (tied >= 1 for the rows it computed), lanes [0, rows).
template <class T>
__attribute__((always_inline)) inline typename Simd<T>::V log_untied_sums(const ShortRowSums<T>& s, size_t rows) {
  using S = Simd<T>;
  return log_untied_sum_vector<T>(S::load_tail(s.sum, rows, T(0)), S::load_tail(s.tied, rows, T(1)));
}

// y = c(x - m) - lse for R rows in lockstep: shift_store's operations, row by row.
template <class T, bool kScaled, int R>
__attribute__((always_inline)) inline void shift_store_lockstep(const T* x, T* y, size_t n, ptrdiff_t ldx, ptrdiff_t ldy,
                                                                T c, const T* m, const T* lse) {
  using S = Simd<T>;
  using V = typename S::V;
  const V vc = S::set1(c);
  V vm[R], vl[R];
  LOGITKIT_LOCKSTEP(r, R) {
    vm[r] = S::set1(m[r]);
    vl[r] = S::set1(lse[r]);
  }
  for_vectors<S>(
      n,
      [&](size_t i, int) {
        LOGITKIT_LOCKSTEP(r, R)
        S::store(y + ptrdiff_t(r) * ldy + i, shifted_log<T, kScaled>(S::load(x + ptrdiff_t(r) * ldx + i), vm[r], vc, vl[r]));
      },
      [&](size_t i, size_t rem) {
        LOGITKIT_LOCKSTEP(r, R)
        S::store_tail(y + ptrdiff_t(r) * ldy + i,
                      shifted_log<T, kScaled>(S::load_tail(x + ptrdiff_t(r) * ldx + i, rem, T(0)), vm[r], vc, vl[r]), rem);
      });
}

template <class T, bool kScaled>
void log_softmax_rows_short(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c) {
  using S = Simd<T>;
  const size_t block = ShortRowSums<T>::block_rows(n);
  const bool pairs = short_rows_in_pairs<T>(n);
  ShortRowSums<T> s{};
  T lse[ShortRowSums<T>::kRows];
  for (size_t r0 = 0; r0 < rows; r0 += block) {
    const size_t nb = std::min(block, rows - r0);
    const T* xb = x + ptrdiff_t(r0) * ldx;
    T* yb = y + ptrdiff_t(r0) * ldy;
    short_row_sums<T, kScaled>(xb, nb, n, ldx, c, s, [&](size_t r) { log_softmax_row(xb + ptrdiff_t(r) * ldx, yb + ptrdiff_t(r) * ldy, n, c); });
    if (nb == 1) {  // as for softmax: no vector load of a just-stored lane
      lse[0] = log_sum_from_untied(UntiedSum<T>{s.sum[0], s.tied[0]});
    } else {
      S::store(lse, log_untied_sums(s, nb));
    }
    for_computed_rows(s, nb, pairs, [&](size_t r, auto R) {
      shift_store_lockstep<T, kScaled, decltype(R)::value>(xb + ptrdiff_t(r) * ldx, yb + ptrdiff_t(r) * ldy, n, ldx, ldy, c, s.max + r,
                                                           lse + r);
    });
  }
}

template <class T>
void log_softmax_rows(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c) {
  if (rows > 1 && pipelines_rows(n, sizeof(T))) {
    log_softmax_rows_pipelined(x, y, rows, n, ldx, ldy, c);
    return;
  }
  if (n <= kSumBlock<T>) {
    with_scale(c, [&](auto scaled) { log_softmax_rows_short<T, decltype(scaled)::value>(x, y, rows, n, ldx, ldy, c); });
    return;
  }
  for (size_t r = 0; r < rows; ++r) log_softmax_row(x + ptrdiff_t(r) * ldx, y + ptrdiff_t(r) * ldy, n, c);
}

// log_softmax for outputs far beyond the last-level cache, as softmax_rows_streamed: memory sees
// one read of x and one write of y instead of a plain store's read-for-ownership of y as well.
// Rows of one sum block run log_softmax_rows_short in tiles (streamed_short_rows); longer rows run
// log_softmax_row with a streamed store pass (x comes from L2 for the sum and the stores).
// Bitwise equal to log_softmax_row. scratch: streamed_scratch_elements(n).
template <class T>
void log_softmax_rows_streamed(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c,
                               T* scratch) {
  using S = Simd<T>;
  if (n <= kSumBlock<T>) {
    with_scale(c, [&](auto scaled) {
      streamed_short_rows(x, y, rows, n, ldx, ldy, scratch, [&](const T* xt, T* buf, size_t count, ptrdiff_t ldb) {
        log_softmax_rows_short<T, decltype(scaled)::value>(xt, buf, count, n, ldx, ldb, c);
      });
    });
  } else {
    for (size_t r = 0; r < rows; ++r) log_softmax_row<T, true>(x + ptrdiff_t(r) * ldx, y + ptrdiff_t(r) * ldy, n, c);
  }
  S::stream_fence();
}

// logsumexp (unweighted) over several rows, pipelined as log_softmax_rows_pipelined: row r's
// untied sum carries row r+1's max pass. Per element: reads x twice (from L2 the second time),
// 1 exp. Bitwise equal to logsumexp_row row by row.
template <class T>
void logsumexp_rows_pipelined(const T* x, T* out, T* sign, size_t rows, size_t n, ptrdiff_t ldx,
                              ptrdiff_t out_stride, ptrdiff_t sign_stride) {
  using S = Simd<T>;
  using V = typename S::V;
  T m = row_max(x, n);
  for (size_t r = 0; r < rows; ++r) {
    const T* xr = x + ptrdiff_t(r) * ldx;
    const bool next = r + 1 < rows;
    const T shift = std::isfinite(m) ? m : T(0);  // as logsumexp_row
    V mx[4] = {S::set1(kNegInf<T>), S::set1(kNegInf<T>), S::set1(kNegInf<T>), S::set1(kNegInf<T>)};
    auto run = [&](auto has_next) {
      return untied_sum_riding<T>(xr, nullptr, n, m, shift, T(1), [&](auto, size_t b) {
        return LogSoftmaxRider<T, false, decltype(has_next)::value, false>{
            next ? xr + ldx + b : nullptr, mx, nullptr, nullptr, S::zero(), S::zero(), S::zero()};
      });
    };
    const UntiedSum<T> u = next ? run(std::true_type{}) : run(std::false_type{});
    T* sign_r = sign ? sign + ptrdiff_t(r) * sign_stride : nullptr;
    finish_logsumexp<T>(m, u, out + ptrdiff_t(r) * out_stride, sign_r);
    if (next) m = max4<T>(mx);
  }
}

template <class T>
void logsumexp_rows(const T* x, const T* b, T* out, T* sign, size_t rows, size_t n, ptrdiff_t ldx,
                    ptrdiff_t ldb, ptrdiff_t out_stride, ptrdiff_t sign_stride) {
  if (!b && rows > 1 && pipelines_rows(n, sizeof(T))) {
    logsumexp_rows_pipelined(x, out, sign, rows, n, ldx, out_stride, sign_stride);
    return;
  }
  auto alone = [&](size_t r) {
    logsumexp_row(x + ptrdiff_t(r) * ldx, b ? b + ptrdiff_t(r) * ldb : nullptr, n, out + ptrdiff_t(r) * out_stride,
                  sign ? sign + ptrdiff_t(r) * sign_stride : nullptr);
  };
  if (!b && n <= kSumBlock<T>) {
    // Blocks of rows as log_softmax_rows_short; a computed row's sum has tied >= 1 and sum >= 0 (or
    // NaN), so finish_logsumexp's general case: log1p(sum / tied) (+ log(tied)) + max, sign +1.
    using S = Simd<T>;
    constexpr size_t kBlock = ShortRowSums<T>::kRows;
    ShortRowSums<T> s{};
    T lse[kBlock];
    for (size_t r0 = 0; r0 < rows; r0 += kBlock) {
      const size_t nb = std::min(kBlock, rows - r0);
      short_row_sums<T, false>(x + ptrdiff_t(r0) * ldx, nb, n, ldx, T(1), s, [&](size_t r) { alone(r0 + r); });
      S::store(lse, S::add(log_untied_sums(s, nb), S::load_tail(s.max, nb, T(0))));
      for_computed_rows(s, nb, false, [&](size_t r, auto) {
        out[ptrdiff_t(r0 + r) * out_stride] = lse[r];
        if (sign) sign[ptrdiff_t(r0 + r) * sign_stride] = std::isnan(lse[r]) ? lse[r] : T(1);  // a NaN sum: NaN sign
      });
    }
    return;
  }
  for (size_t r = 0; r < rows; ++r) alone(r);
}

template <class T>
SoftmaxKernels<T> make_softmax_kernels() {
  SoftmaxKernels<T> k{};
  k.softmax_rows = softmax_rows<T>;
  k.log_softmax_rows = log_softmax_rows<T>;
  k.logsumexp_rows = logsumexp_rows<T>;
  k.max = row_max<T>;
  k.magnitude = row_magnitude<T>;
  k.exp_store_sum = exp_store_sum<T>;
  k.exp_store_sum_unshifted = exp_store_sum_unshifted<T>;
  k.exp_sum = exp_sum<T>;
  k.scale = scale<T>;
  k.softmax_rows_streamed = softmax_rows_streamed<T>;
  k.log_softmax_rows_streamed = log_softmax_rows_streamed<T>;
  k.exp_scale_store = exp_scale_store<T>;
  k.log_sum_from_untied = log_sum_from_untied<T>;
  k.finish_logsumexp = finish_logsumexp<T>;
  k.extexp_sum = extexp_sum<T>;
  k.extexp_store = extexp_store<T>;
  k.online_sum = online_sum<T>;
  k.weighted_max = weighted_max<T>;
  k.untied_sum = untied_sum<T>;
  k.shift_store = shift_store<T>;
  k.finish_dominant_entries = finish_dominant_entries<T>;
  return k;
}

}  // namespace softmax_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
