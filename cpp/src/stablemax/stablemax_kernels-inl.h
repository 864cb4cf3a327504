// stablemax kernels (StableMax and log-StableMax (grokking paper) forward and backward), written once over Simd<T> and compiled per ISA.
//
// s(x) = 1 + x for x >= 0 and 1/(1 - x) for x < 0; stablemax = s / sum s. Both branches share
// a = 1 + |x|, so s = a or 1/a and the kernels need no max pass and no exp. Cost per element
// (float32; reads/writes counted in 4-byte elements):
//   sum / sum_total / sum_dot  pass 1: reads x (and dy), 1 division. Compute-bound in cache
//                              (division throughput), memory-bound from DRAM.
//   store                      pass 2: reads x, writes y, 1 division.
//   sum_top                    as sum, plus a running max per lane (log_stablemax's pass 1).
//   log_store                  pass 2: reads x, writes y, 1 division and 1 log (1 more division
//                              + ~14 FMA-class ops); rows with subnormal p add a log1p. Compute-bound.
//   backward_store             pass 2: reads x and dy, writes dx, 2 divisions.
// The forward passes move 12 bytes per element (x twice, y once); the second read of x hits
// cache while a row fits in L2. No exp anywhere.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <algorithm>
#include <cstddef>
#include <limits>

#include "simd/loops-inl.h"
#include "simd/math-inl.h"
#include "stablemax/stablemax_kernels.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace stablemax_impl {

template <class T>
constexpr T kNegInf = -std::numeric_limits<T>::infinity();

// a = 1 + |c x| and whether c x >= 0 (false for NaN, which then flows through the 1/a branch).
template <class T>
struct Arg {
  typename Simd<T>::V a;
  typename Simd<T>::M pos;
};
template <class T>
inline Arg<T> arg(typename Simd<T>::V x, typename Simd<T>::V c) {
  using S = Simd<T>;
  auto xc = S::mul(x, c);
  return {S::add(S::set1(T(1)), S::abs(xc)), S::le(S::zero(), xc)};
}

// sc * s(c x).
template <class T>
inline typename Simd<T>::V scaled_s(Arg<T> g, typename Simd<T>::V sc) {
  using S = Simd<T>;
  return S::select(g.pos, S::mul(g.a, sc), S::div(sc, g.a));
}

// p = s / S: (a sc) / S' for c x >= 0, (sc / S') / a otherwise. Each form keeps its
// intermediates normal whenever p is (see the driver's choice of sc). The rounded reciprocals
// can overshoot 1 by an ulp (a one-element row), hence the min (second operand: NaN stays NaN).
template <class T>
inline typename Simd<T>::V prob(Arg<T> g, typename Simd<T>::V sc, typename Simd<T>::V inv,
                                typename Simd<T>::V w) {
  using S = Simd<T>;
  return S::min(S::set1(T(1)), S::select(g.pos, S::mul(S::mul(g.a, sc), inv), S::div(w, g.a)));
}

// kMode 0: {sum sc s, 0}; 1: {sum sc s, sum sc s dy}; 2: {sum sc s, sum dy}; 3: {sum sc s, sum
// over all but one largest entry, that largest c x}. Every mode also returns max a. Blocks of
// kSumBlock<T> elements are summed in T with four accumulators, the block totals by BlockSum.
// Mode 3 keeps a running max m per lane and adds s(min(m, c x)): the entry that stops being the
// lane's max joins the sum, so the sum excluding the top needs no second pass (and no s is
// subtracted, which would cancel when the top dominates).
template <class T, int kMode>
StablemaxSums sums_block(const T* x, const T* dy, size_t n, T c, T sc) {
  using S = Simd<T>;
  using V = typename S::V;
  const V vc = S::set1(c), vsc = S::set1(sc), one = S::set1(T(1));
  V acc[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  V oth[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  V top[4];
  for (V& t : top) t = S::set1(kNegInf<T>);
  V amax = S::zero();
  // c x can only overflow for c > 1 (finite x); the loop-invariant test is unswitched, so T >= 1
  // pays nothing for the overflow check.
  const bool track = c > T(1);
  auto step = [&](V xv, V dv, int k) {
    if constexpr (kMode == 3) {
      const V xc = S::mul(xv, vc);
      acc[k] = S::add(acc[k], scaled_s<T>(arg<T>(S::min(top[k], xc), one), vsc));
      top[k] = S::max(top[k], xc);
      return;
    }
    V s = scaled_s<T>(arg<T>(xv, vc), vsc);
    acc[k] = S::add(acc[k], s);
    if constexpr (kMode == 1) oth[k] = S::fma(s, dv, oth[k]);
    if constexpr (kMode == 2) oth[k] = S::add(oth[k], dv);
  };
  for_vectors<S>(
      n,
      [&](size_t i, int k) {
        const V xv = S::load(x + i);
        if (track) amax = S::max(amax, arg<T>(xv, vc).a);
        step(xv, kMode == 1 || kMode == 2 ? S::load(dy + i) : S::zero(), k);
      },
      [&](size_t i, size_t r) {
        if (track) amax = S::max(amax, arg<T>(S::load_tail(x + i, r, T(0)), vc).a);
        // Padding: x = -inf has s = 0 and dy = 0, so padded lanes add nothing.
        step(S::load_tail(x + i, r, kNegInf<T>),
             kMode == 1 || kMode == 2 ? S::load_tail(dy + i, r, T(0)) : S::zero(), 0);
      });
  const double amax_d = track ? static_cast<double>(S::reduce_max(amax)) : 0.0;
  if constexpr (kMode == 3) {
    for (int k = 1; k < 4; ++k) {
      acc[0] = S::add(S::add(acc[0], acc[k]), scaled_s<T>(arg<T>(S::min(top[0], top[k]), one), vsc));
      top[0] = S::max(top[0], top[k]);
    }
    alignas(64) T tops[S::N], rests[S::N];
    S::store(tops, top[0]);
    S::store(rests, acc[0]);
    TopRest tr{static_cast<double>(tops[0]), static_cast<double>(rests[0])};
    for (size_t l = 1; l < S::N; ++l) tr.merge<T>(tops[l], static_cast<double>(rests[l]), sc);
    return {tr.rest + static_cast<double>(scaled_s_scalar<T>(static_cast<T>(tr.top), sc)), tr.rest, tr.top, amax_d};
  }
  return {static_cast<double>(S::reduce_add(sum4<T>(acc))), static_cast<double>(S::reduce_add(sum4<T>(oth))), 0.0,
          amax_d};
}

template <class T, int kMode>
StablemaxSums sums(const T* x, const T* dy, size_t n, T c, T sc) {
  StablemaxSums total{0.0, 0.0, 0.0, 0.0};
  BlockSum<T> sum, other;
  TopRest tr{static_cast<double>(kNegInf<T>), 0.0};
  for_blocks<T>(n, [&](size_t b, size_t len) {
    StablemaxSums p = sums_block<T, kMode>(x + b, kMode == 1 || kMode == 2 ? dy + b : nullptr, len, c, sc);
    total.amax = std::max(total.amax, p.amax);  // only compared with inf: NaN handling is moot
    if constexpr (kMode == 3) {
      tr.merge<T>(static_cast<T>(p.top), p.other, sc);
    } else {
      sum.add(p.sum);
      other.add(p.other);
    }
  });
  if constexpr (kMode == 3) {
    total.other = tr.rest;
    total.top = tr.top;
    total.sum = tr.rest + static_cast<double>(scaled_s_scalar<T>(static_cast<T>(tr.top), sc));
  } else {
    total.sum = sum.value();
    total.other = other.value();
  }
  return total;
}

template <class T>
StablemaxSums sum(const T* x, size_t n, T c, T sc) {
  return sums<T, 0>(x, nullptr, n, c, sc);
}
template <class T>
StablemaxSums sum_dot(const T* x, const T* dy, size_t n, T c, T sc) {
  return sums<T, 1>(x, dy, n, c, sc);
}
template <class T>
StablemaxSums sum_total(const T* x, const T* dy, size_t n, T c, T sc) {
  return sums<T, 2>(x, dy, n, c, sc);
}
template <class T>
StablemaxSums sum_top(const T* x, size_t n, T c, T sc) {
  return sums<T, 3>(x, nullptr, n, c, sc);
}

template <class T>
void store(const T* x, T* y, size_t n, T c, T sc, T inv, T w) {
  using S = Simd<T>;
  const auto vc = S::set1(c), vsc = S::set1(sc), vinv = S::set1(inv), vw = S::set1(w);
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(y + i, prob<T>(arg<T>(S::load(x + i), vc), vsc, vinv, vw)); },
      [&](size_t i, size_t r) {
        S::store_tail(y + i, prob<T>(arg<T>(S::load_tail(x + i, r, T(0)), vc), vsc, vinv, vw), r);
      });
}

// log p. Where p is normal, log(p) with p formed as in `store`: its error of an ulp or two is an
// absolute error in the log, and |log p| >= log 2 for every entry but the top one (p <= 1/2).
// The top entries (c x == top) get the driver's y_top = -log1p(rest / s_top), accurate where
// p -> 1 and log p -> 0. Where p is subnormal (or 0), log s - log S = sign(c x) log1p(|c x|) -
// log_sum: then |log p| > 87 (float) and the two terms hardly cancel. (Subtracting log S
// everywhere loses ~|log S| / |log p| ulp: 32 ulp at x = [1e30, 4e29].)
template <class T>
void log_store(const T* x, T* y, size_t n, T c, T sc, T inv, T w, T top, T y_top, T log_sum) {
  using S = Simd<T>;
  using V = typename S::V;
  const V vc = S::set1(c), vsc = S::set1(sc), vinv = S::set1(inv), vw = S::set1(w), vtop = S::set1(top),
          vytop = S::set1(y_top), vl = S::set1(log_sum), tiny = S::set1(std::numeric_limits<T>::min());
  auto one = [&](V xv) {
    const Arg<T> g = arg<T>(xv, vc);
    const V p = prob<T>(g, vsc, vinv, vw);
    V r = vlog<T>(p);
    const auto sub = S::lt(p, tiny);
    if (S::any(sub)) {  // rare: only rows with probabilities below the normal range
      const V xc = S::mul(xv, vc);
      const V l = vlog1p<T>(S::abs(xc));
      r = S::select(sub, S::sub(S::select(g.pos, l, S::sub(S::zero(), l)), vl), r);
    }
    return S::select(S::eq(S::mul(xv, vc), vtop), vytop, r);
  };
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(y + i, one(S::load(x + i))); },
      [&](size_t i, size_t r) { S::store_tail(y + i, one(S::load_tail(x + i, r, T(0))), r); });
}

// StableMax VJP. With p = s/S and s'(x) = 1 (x >= 0) or s^2 (x < 0), s'/s = 1/a on both branches:
//   kLog = false: dx_i = c s'_i/S (dy_i - g) = c p_i (dy_i - g) / a_i
//   kLog = true:  dx_i = c (s'_i/s_i dy_i - s'_i/S G) = c (dy_i - G p_i) / a_i
template <class T, bool kLog>
void backward_store_impl(const T* x, const T* dy, T* dx, size_t n, T c, T sc, T inv, T w, T gsum) {
  using S = Simd<T>;
  using V = typename S::V;
  const V vc = S::set1(c), vsc = S::set1(sc), vinv = S::set1(inv), vw = S::set1(w), vg = S::set1(gsum);
  auto one = [&](V xv, V dv) {
    Arg<T> g = arg<T>(xv, vc);
    V p = prob<T>(g, vsc, vinv, vw);
    V t = kLog ? S::fnma(vg, p, dv) : S::mul(p, S::sub(dv, vg));
    return S::div(S::mul(t, vc), g.a);
  };
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(dx + i, one(S::load(x + i), S::load(dy + i))); },
      [&](size_t i, size_t r) {
        S::store_tail(dx + i, one(S::load_tail(x + i, r, T(0)), S::load_tail(dy + i, r, T(0))), r);
      });
}

template <class T>
void backward_store(const T* x, const T* dy, T* dx, size_t n, T c, T sc, T inv, T w, T g) {
  backward_store_impl<T, false>(x, dy, dx, n, c, sc, inv, w, g);
}
template <class T>
void log_backward_store(const T* x, const T* dy, T* dx, size_t n, T c, T sc, T inv, T w, T g) {
  backward_store_impl<T, true>(x, dy, dx, n, c, sc, inv, w, g);
}

template <class T>
StablemaxKernels<T> make_stablemax_kernels() {
  StablemaxKernels<T> k{};
  k.sum = sum<T>;
  k.sum_dot = sum_dot<T>;
  k.sum_total = sum_total<T>;
  k.sum_top = sum_top<T>;
  k.store = store<T>;
  k.log_store = log_store<T>;
  k.backward_store = backward_store<T>;
  k.log_backward_store = log_backward_store<T>;
  return k;
}

}  // namespace stablemax_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
