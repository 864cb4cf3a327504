// Vector exp, log, log1p and their building blocks, written once over Simd<T> and compiled per ISA.
// Re-included by each ISA translation unit after its vec_<isa>-inl.h (which names the namespace).
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "simd/loops-inl.h"

namespace logitkit {
namespace LOGITKIT_TARGET {

template <class T>
struct ExpConstants;

// float: exp(r) on [-ln2/2, ln2/2] as 1 + r + r^2 q(r), q of degree 4 fitted for minimum relative
// error (3.1e-9, well under half an ulp), so the total error is dominated by rounding (see README).
template <>
struct ExpConstants<float> {
  static constexpr float kLog2e = 0x1.715476p+0f;
  static constexpr float kLn2Hi = 0x1.62e430p-1f;  // ln2 split for Cody-Waite reduction
  static constexpr float kLn2Lo = -0x1.05c610p-29f;
  static constexpr float kMinArg = -104.0f;  // exp rounds to +0 below about -103.97
  static constexpr float kMaxArg = 89.0f;    // exp overflows to +inf above about 88.72
  static constexpr int kPolyDegree = 4;
  static constexpr float kPoly[5] = {0x1.fffffcp-2f, 0x1.555492p-3f, 0x1.5558f2p-5f,
                                      0x1.1239d4p-7f, 0x1.6a2444p-10f};
  // |x| beyond which the (mantissa, exponent) pair of the two-pass algorithm loses accuracy.
  static constexpr float kExtExpLimit = 0x1p20f;
  static constexpr float kMinNormalExp = -126.0f, kMaxNormalExp = 127.0f;
  static constexpr float kZeroExp = -127.0f;  // pow2i(kZeroExp) == +0
};

// double: Taylor coefficients 1/k! up to degree 13 (remainder < 4e-18 on the reduced range).
template <>
struct ExpConstants<double> {
  static constexpr double kLog2e = 0x1.71547652b82fep+0;
  static constexpr double kLn2Hi = 0x1.62e42fefa39efp-1;
  static constexpr double kLn2Lo = 0x1.abc9e3b39803fp-56;
  static constexpr double kMinArg = -746.0;
  static constexpr double kMaxArg = 710.0;
  static constexpr int kPolyDegree = 11;
  static constexpr double kPoly[12] = {
      1.0 / 2,          1.0 / 6,           1.0 / 24,         1.0 / 120,
      1.0 / 720,        1.0 / 5040,        1.0 / 40320,      1.0 / 362880,
      1.0 / 3628800,    1.0 / 39916800,    1.0 / 479001600,  1.0 / 6227020800};
  static constexpr double kExtExpLimit = 0x1p40;
  static constexpr double kMinNormalExp = -1022.0, kMaxNormalExp = 1023.0;
  static constexpr double kZeroExp = -1023.0;
};

// The exp building blocks come in "group" form: K independent vectors processed in lockstep
// (LOGITKIT_LOCKSTEP), so their dependency chains (about 50 cycles of latency for one exp) are
// interleaved instruction by instruction and the FMA ports, which bound the throughput, stay
// busy without relying on the out-of-order window to find the overlap. Measured on Zen 5
// (AVX-512): the exp pass of softmax went from 8.7 to 6.6 cycles per vector with K = 4. The
// single-vector functions are the K = 1 case, so both give bitwise the same results.

// r[k] := exp(r[k]) for the reduced argument |r| <= ln2/2: 1 + r + r^2 q(r), Horner.
template <class T, int K>
__attribute__((always_inline)) inline void exp_reduced_poly_group(typename Simd<T>::V (&r)[K]) {
  using S = Simd<T>;
  using C = ExpConstants<T>;
  typename S::V q[K];
  LOGITKIT_LOCKSTEP(k, K) q[k] = S::set1(C::kPoly[C::kPolyDegree]);
  _Pragma("GCC unroll 16") for (int d = C::kPolyDegree - 1; d >= 0; --d) {
    LOGITKIT_LOCKSTEP(k, K) q[k] = S::fma(q[k], r[k], S::set1(C::kPoly[d]));
  }
  LOGITKIT_LOCKSTEP(k, K) q[k] = S::fma(q[k], r[k], S::set1(T(1)));  // 1 + r q
  LOGITKIT_LOCKSTEP(k, K) r[k] = S::fma(q[k], r[k], S::set1(T(1)));  // 1 + r + r^2 q
}

// Splits x = n ln2 + r with n integral (as T) and |r| <= ln2/2 (+ rounding); x[k] becomes r.
template <class T, int K>
__attribute__((always_inline)) inline void exp_reduce_group(typename Simd<T>::V (&x)[K],
                                                            typename Simd<T>::V (&n)[K]) {
  using S = Simd<T>;
  using C = ExpConstants<T>;
  LOGITKIT_LOCKSTEP(k, K) n[k] = S::round(S::mul(x[k], S::set1(C::kLog2e)));
  LOGITKIT_LOCKSTEP(k, K) x[k] = S::fnma(n[k], S::set1(C::kLn2Hi), x[k]);
  LOGITKIT_LOCKSTEP(k, K) x[k] = S::fnma(n[k], S::set1(C::kLn2Lo), x[k]);
}

template <class T>
inline typename Simd<T>::V exp_reduced_poly(typename Simd<T>::V r) {
  typename Simd<T>::V v[1] = {r};
  exp_reduced_poly_group<T, 1>(v);
  return v[0];
}

template <class T>
inline void exp_reduce(typename Simd<T>::V x, typename Simd<T>::V& n, typename Simd<T>::V& r) {
  typename Simd<T>::V v[1] = {x}, e[1];
  exp_reduce_group<T, 1>(v, e);
  n = e[0];
  r = v[0];
}

// v * 2^n for integral n between 2*kZeroExp and 2*kMaxNormalExp: exact, denormal results
// rounded once, overflow to inf. One instruction with AVX-512 scalef; otherwise two exact
// power-of-two factors on the rare vectors that leave the normal exponent range.
template <class T>
inline typename Simd<T>::V ldexp_full(typename Simd<T>::V v, typename Simd<T>::V n) {
  using S = Simd<T>;
  using C = ExpConstants<T>;
  if constexpr (S::kNativeScalef) {
    return S::scalef(v, n);
  } else {
    auto out_of_range = S::mask_or(S::lt(n, S::set1(C::kMinNormalExp)),
                                   S::gt(n, S::set1(C::kMaxNormalExp)));
    if (!S::any(out_of_range)) return S::mul(v, S::pow2i(n));
    auto half = S::floor(S::mul(n, S::set1(T(0.5))));
    return S::mul(S::mul(v, S::pow2i(half)), S::pow2i(S::sub(n, half)));
  }
}

// v * 2^d for integral d <= 0 when only the sum matters: terms below 2^kMinNormalExp of the
// largest one are dropped (flushed to 0), which cannot change a sum whose largest term is >= 0.5.
template <class T>
inline typename Simd<T>::V ldexp_nonpositive(typename Simd<T>::V v, typename Simd<T>::V d) {
  using S = Simd<T>;
  using C = ExpConstants<T>;
  if constexpr (S::kNativeScalef) {
    return S::scalef(v, d);
  } else {
    return S::mul(v, S::pow2i(S::max(d, S::set1(C::kZeroExp))));
  }
}

// float exp by Tang's table method, for |x| <= kLimit (normal, finite results):
//   x = (16k + j) ln2/16 + r, |r| <= ln2/32 (+ rounding), j in [0, 16)
//   exp(x) = 2^k 2^(j/16) e^r, with 2^(j/16) = T_j (1 + eps_j), T_j its float rounding
//   e^r = 1 + p(r), p(r) = r (1 + r (c2 + c3 r)): minimax on |r| <= ln2/32, relative error 1.6e-9
//   exp(x) ~= T' + T' (p(r) + eps_j), T' = 2^k T_j (eps_j p(r) < 2^-30 is dropped)
// T' costs no multiply: n = 16k + j comes out of the rounding FMA in the low bits of
// n + 1.5 * 2^23, so (those bits << 19) = (k << 23) + (j << 19), and the table holds
// bits(T_j) - (j << 19): one integer add puts k into T_j's exponent. The only rounding that
// matters is the last FMA's: max error 0.57 ulp (tests/cpp/test_exp_accuracy.cc), against 0.91
// for the degree-6 polynomial below. Compute-bound: 12 vector operations per vector (7 of them
// FMA), against 12 plus a scalef (two FMA-port slots) for the polynomial. Zen 4 issues one
// 512-bit FMA per cycle and runs the 5 others (subtract, lookups, shift, integer add) beside it,
// so the 7 FMAs bound the exp at 7 cycles per 16 floats; softmax's exp pass went from 11.6 to
// 9.6 with this method.
struct ExpTable {
  static constexpr float kLimit = 87.0f;              // |x| <= 87: 2^k T' stays normal
  static constexpr float kScale = 0x1.715476p+4f;     // 16 / ln2
  static constexpr float kRoundMagic = 0x1.8p23f;     // n + magic keeps n in the low mantissa bits
  static constexpr float kStepHi = 0x1.62e430p-5f;    // ln2/16 split for Cody-Waite reduction
  static constexpr float kStepLo = -0x1.05c610p-33f;
  static constexpr float kC2 = 0x1.00021ep-1f, kC3 = 0x1.55559ep-3f;
  // The floats whose bit patterns are bits(T_j) - (j << 19).
  static constexpr float kScaleBits[16] = {
      0x1.000000p+0f, 0x1.fb5586p-1f, 0x1.f72b84p-1f, 0x1.f387a6p-1f,
      0x1.f06fe0p-1f, 0x1.edea64p-1f, 0x1.ebfdaep-1f, 0x1.eab07ep-1f,
      0x1.ea09e6p-1f, 0x1.ea1148p-1f, 0x1.eace54p-1f, 0x1.ec4918p-1f,
      0x1.ee89fap-1f, 0x1.f199bep-1f, 0x1.f5818ep-1f, 0x1.fa4afap-1f};
  // eps_j = (2^(j/16) - T_j) / T_j.
  static constexpr float kEps[16] = {
      0.0f,           0x1.8d96d4p-25f,  -0x1.9c0c22p-27f, 0x1.964904p-25f, 0x1.125002p-25f, 0x1.370be4p-25f,
      -0x1.0a3550p-25f, -0x1.00d8acp-27f, 0x1.26055cp-26f, -0x1.05cb44p-25f, 0x1.67a1cap-28f, 0x1.a3b5e4p-28f,
      -0x1.f9c304p-27f, -0x1.6961b4p-28f, -0x1.a5217cp-28f, 0x1.61428ep-28f};
};

// The table method is used for float where the vector layer has a 16-entry lookup.
template <class T>
inline constexpr bool kTableExp = std::is_same_v<T, float> && Simd<T>::kLookup16;

// x[k] := exp(x[k]) by the table method; every lane must satisfy |x| <= ExpTable::kLimit or be
// NaN (NaN propagates through r).
template <int K>
__attribute__((always_inline)) inline void exp_table_group(typename Simd<float>::V (&x)[K]) {
  using S = Simd<float>;
  using C = ExpTable;
  const auto scale_bits = S::load_table16(C::kScaleBits);
  const auto eps = S::load_table16(C::kEps);
  // One vector at a time: fewer live registers than stepping K vectors in lockstep, so the
  // constants stay in registers; the K chains are independent and overlap out of order.
  LOGITKIT_LOCKSTEP(k, K) {
    const auto n = S::fma(x[k], S::set1(C::kScale), S::set1(C::kRoundMagic));
    const auto nf = S::sub(n, S::set1(C::kRoundMagic));
    auto r = S::fnma(nf, S::set1(C::kStepHi), x[k]);
    r = S::fnma(nf, S::set1(C::kStepLo), r);
    auto q = S::fma(S::set1(C::kC3), r, S::set1(C::kC2));
    q = S::fma(q, r, S::set1(1.0f));
    q = S::fma(q, r, S::lookup16(eps, n));  // p(r) + eps_j
    const auto t = S::add_bits(S::lookup16(scale_bits, n), S::template shl_bits<19>(n));
    x[k] = S::fma(t, q, t);
  }
}

// x[k] := exp(x[k]) by the degree-6 polynomial and ldexp_full: valid for every x.
template <class T, int K>
__attribute__((always_inline)) inline void exp_poly_group(typename Simd<T>::V (&x)[K]) {
  using S = Simd<T>;
  using C = ExpConstants<T>;
  typename S::V n[K];
  LOGITKIT_LOCKSTEP(k, K) x[k] = S::clamp(x[k], S::set1(C::kMinArg), S::set1(C::kMaxArg));
  exp_reduce_group<T, K>(x, n);
  exp_reduced_poly_group<T, K>(x);
  LOGITKIT_LOCKSTEP(k, K) x[k] = ldexp_full<T>(x[k], n[k]);
}

// Groups with a lane beyond the table method's range other than those whose exp rounds to +0
// (rare: denormal results, overflow): those lanes get the polynomial, lanes at or below -104 get
// +0, the rest (NaN included) the table. Out of line, so the common path's loop keeps its
// registers.
template <int K>
__attribute__((noinline, cold)) void exp_mixed_group(typename Simd<float>::V (&x)[K]) {
  using S = Simd<float>;
  typename S::V fast[K];
  typename S::M zero[K], slow[K];
  LOGITKIT_LOCKSTEP(k, K) {
    fast[k] = x[k];
    zero[k] = S::le(x[k], S::set1(ExpConstants<float>::kMinArg));
    slow[k] = S::mask_andnot(zero[k], S::gt(S::abs(x[k]), S::set1(ExpTable::kLimit)));  // false for NaN
  }
  exp_table_group<K>(fast);
  exp_poly_group<float, K>(x);
  LOGITKIT_LOCKSTEP(k, K) x[k] = S::select(zero[k], S::zero(), S::select(slow[k], x[k], fast[k]));
}

// x[k] := exp(x[k]) for every x: NaN propagates, overflow gives +inf, denormal results are
// rounded once (no flush to zero), -inf gives +0. Max error below 1 ulp (float32, exhaustive
// test in tests/cpp). float with a table lookup: the table method when every lane of the group
// has |x| <= 87 (one compare per group); lanes whose exp rounds to +0 (x <= -104, -inf: masked
// logits) are zeroed after it; groups with any other lane out of range go to exp_mixed_group.
// Either way a lane's result depends on its own input only, never on its neighbours.
template <class T, int K>
__attribute__((always_inline)) inline void vexp_group(typename Simd<T>::V (&x)[K]) {
  using S = Simd<T>;
  if constexpr (kTableExp<T>) {
    const auto limit = S::set1(ExpTable::kLimit);
    auto big = S::zero();
    LOGITKIT_LOCKSTEP(k, K) big = S::max_magnitude(big, x[k]);
    if (__builtin_expect(!S::any(S::not_le(big, limit)), 1)) {
      exp_table_group<K>(x);
      return;
    }
    typename S::M zero[K];
    bool other = false;
    LOGITKIT_LOCKSTEP(k, K) {
      zero[k] = S::le(x[k], S::set1(ExpConstants<float>::kMinArg));
      other = other || S::any(S::mask_andnot(zero[k], S::gt(S::abs(x[k]), limit)));
    }
    if (__builtin_expect(other, 0)) {
      typename S::V spill[K];  // x itself stays in registers: its address is never taken
      LOGITKIT_LOCKSTEP(k, K) spill[k] = x[k];
      exp_mixed_group<K>(spill);
      LOGITKIT_LOCKSTEP(k, K) x[k] = spill[k];
      return;
    }
    exp_table_group<K>(x);
    LOGITKIT_LOCKSTEP(k, K) x[k] = S::select(zero[k], S::zero(), x[k]);
  } else {
    exp_poly_group<T, K>(x);
  }
}

// exp of the last, partial vector of a hot loop (its lanes past the end hold -inf): vexp_group
// out of line, so the group form's rare paths do not weigh on the register allocation of the loop
// they follow (measured: 13% on the pipelined softmax when inlined).
template <class T>
__attribute__((noinline)) typename Simd<T>::V vexp_tail(typename Simd<T>::V x) {
  typename Simd<T>::V v[1] = {x};
  vexp_group<T, 1>(v);
  return v[0];
}

// Exp policies for the hottest loops, which take the exp as a callable exp(x) over a group:
// CheckedExp is vexp_group; GuardedExp defers its range check to the end of the run (a block of
// a row): it computes the table method unchecked and notes max |x|, and ok() tells afterwards
// whether every lane was in range. The loop then has no branch and no call (a call makes GCC
// reload every constant of the loop after it): about 1 cycle per vector less on Zen 4.
template <class T>
struct CheckedExp {
  template <int K>
  __attribute__((always_inline)) void operator()(typename Simd<T>::V (&x)[K]) {
    vexp_group<T, K>(x);
  }
};

template <class T>
struct GuardedExp {
  typename Simd<T>::V big = Simd<T>::zero();
  template <int K>
  __attribute__((always_inline)) void operator()(typename Simd<T>::V (&x)[K]) {
    LOGITKIT_LOCKSTEP(k, K) big = Simd<T>::max_magnitude(big, x[k]);
    exp_table_group<K>(x);
  }
  bool ok() const { return !Simd<T>::any(Simd<T>::not_le(big, Simd<T>::set1(ExpTable::kLimit))); }
};

// For arguments known in advance to satisfy |x| <= ExpTable::kLimit or be NaN (the caller checked
// the whole row): the table method with neither check nor guard, so no compare per vector. The
// same bits as CheckedExp and GuardedExp for those arguments.
template <class T>
struct InRangeExp {
  template <int K>
  __attribute__((always_inline)) void operator()(typename Simd<T>::V (&x)[K]) {
    if constexpr (kTableExp<T>) {
      exp_table_group<K>(x);
    } else {
      vexp_group<T, K>(x);
    }
  }
};

template <class T, class Block>
__attribute__((noinline, cold)) auto run_with_checked_exp(Block& block) {
  CheckedExp<T> exp;
  return block(exp);
}

// Runs block(exp) for one block of a row. `guarded` is the row's state, true at its start: the
// block runs with GuardedExp, and if an argument was out of range, redo(CheckedExp) runs (by
// default the block again; same bits for every in-range lane) and the rest of the row takes
// CheckedExp directly. A row with masked (-inf) logits so pays for one block twice, not all.
template <class T, class Block, class Redo>
__attribute__((always_inline)) inline auto with_guarded_exp(Block&& block, Redo&& redo, bool& guarded) {
  if constexpr (kTableExp<T>) {
    if (__builtin_expect(guarded, 1)) {
      GuardedExp<T> exp;
      auto result = block(exp);
      if (__builtin_expect(exp.ok(), 1)) return result;
      guarded = false;
      return run_with_checked_exp<T>(redo);
    }
    return run_with_checked_exp<T>(block);
  } else {
    CheckedExp<T> exp;
    return block(exp);
  }
}

template <class T, class Block>
__attribute__((always_inline)) inline auto with_guarded_exp(Block&& block, bool& guarded) {
  return with_guarded_exp<T>(block, block, guarded);
}

template <class T>
inline typename Simd<T>::V vexp(typename Simd<T>::V x) {
  typename Simd<T>::V v[1] = {x};
  vexp_group<T, 1>(v);
  return v[0];
}

// c (x - shift), the exp argument of every shifted softmax-family kernel, without overflowing
// where the difference does but the product does not (c < 1, x and shift of opposite signs near
// the largest finite value): for c < 1 it is evaluated as (2c) ((x - shift) / 2), the halved
// difference rounded once by an FMA. Scaling by 2 is exact, so the result has the bits of
// round(round(x - shift) c) wherever x - shift is finite (and not below the normal range, where
// the halving rounds once more: |x - shift| < 2^-125 in float, an exp argument of about 0).
template <class T>
__attribute__((always_inline)) inline typename Simd<T>::V scaled_difference(typename Simd<T>::V x,
                                                                            typename Simd<T>::V shift,
                                                                            typename Simd<T>::V c) {
  using S = Simd<T>;
  const auto halve = S::lt(c, S::set1(T(1)));  // loop-invariant: hoisted by the compiler
  const auto h = S::select(halve, S::set1(T(0.5)), S::set1(T(1)));
  const auto minus_shift_h = S::mul(shift, S::select(halve, S::set1(T(-0.5)), S::set1(T(-1))));
  return S::mul(S::fma(x, h, minus_shift_h), S::select(halve, S::add(c, c), c));
}

// "extexp" of the Two-Pass softmax: exp(z) = mant * 2^expo without forming the power, so no
// overflow is possible and no max is needed. Valid for z <= kExtExpLimit; z below
// -kExtExpLimit gives mant = 0. Group form: z[k] becomes the mantissa, expo[k] the exponent,
// and `bad` is OR-ed with the lanes the pair cannot represent (z too large, NaN).
// With kCorrected, the argument is z - z_err[k] (z_err small against the reduced range, such as
// the rounding error of a product z = c x): the correction joins the reduced argument, so exp
// sees it even where |z| is large.
template <class T, int K, bool kCorrected = false>
__attribute__((always_inline)) inline void vextexp_group(typename Simd<T>::V (&z)[K],
                                                         typename Simd<T>::V (&expo)[K],
                                                         typename Simd<T>::M& bad,
                                                         const typename Simd<T>::V* z_err = nullptr) {
  using S = Simd<T>;
  using C = ExpConstants<T>;
  const auto limit = S::set1(C::kExtExpLimit), neg_limit = S::sub(S::zero(), limit);
  typename S::M negligible[K];
  LOGITKIT_LOCKSTEP(k, K) {
    bad = S::mask_or(bad, S::not_le(z[k], limit));
    negligible[k] = S::lt(z[k], neg_limit);
    z[k] = S::max(z[k], neg_limit);
  }
  exp_reduce_group<T, K>(z, expo);
  if constexpr (kCorrected) {
    LOGITKIT_LOCKSTEP(k, K) z[k] = S::sub(z[k], z_err[k]);
  }
  exp_reduced_poly_group<T, K>(z);
  LOGITKIT_LOCKSTEP(k, K) z[k] = S::select(negligible[k], S::zero(), z[k]);
}

// vextexp_group of c x for kScaled (else of x): the product's rounding error, fnma(x, c, cx)
// exactly, goes into the reduced argument. Otherwise its error would grow with |c x| itself (a
// relative error of about |c x| 2^-24 in float), not with distances between logits as in the
// shifted algorithms: two_pass never subtracts the max. The rounding of c = 1/T itself scales
// every argument alike and cancels in the normalisation up to the same distances.
template <class T, bool kScaled, int K>
__attribute__((always_inline)) inline void vextexp_scaled_group(typename Simd<T>::V (&x)[K],
                                                                typename Simd<T>::V (&expo)[K],
                                                                typename Simd<T>::M& bad,
                                                                typename Simd<T>::V c) {
  using S = Simd<T>;
  if constexpr (kScaled) {
    typename S::V err[K];
    LOGITKIT_LOCKSTEP(k, K) {
      const auto z = S::mul(x[k], c);
      err[k] = S::fnma(x[k], c, z);  // z - c x
      x[k] = z;
    }
    vextexp_group<T, K, true>(x, expo, bad, err);
  } else {
    vextexp_group<T, K>(x, expo, bad);
  }
}

template <class T>
inline void vextexp(typename Simd<T>::V z, typename Simd<T>::V& mant, typename Simd<T>::V& expo,
                    typename Simd<T>::M& bad) {
  typename Simd<T>::V v[1] = {z}, e[1];
  bad = Simd<T>::lt(Simd<T>::zero(), Simd<T>::zero());
  vextexp_group<T, 1>(v, e, bad);
  mant = v[0];
  expo = e[0];
}

// log: x = 2^e m with m in (sqrt(1/2), sqrt(2)], f = m - 1 (exact), s = f / (2 + f), and
// log(1 + f) = 2 atanh(s) = f - (f^2/2 - s (f^2/2 + R(s^2))) with R(z) = sum_k 2 z^k / (2k + 1)
// (Taylor, |s| < 0.1716: truncation below 2e-9 (float, 4 terms) and 7e-19 (double, 10 terms) relative).
// e ln2 is added as e ln2_hi (exact: ln2_hi has few bits) plus e ln2_lo, as in fdlibm's e_log.c.
// Measured max error: tests/test_vector_log.py.
template <class T>
struct LogConstants;
template <>
struct LogConstants<float> {
  static constexpr float kLn2Hi = 0x1.62e000p-1f;  // 13 significant bits: e * kLn2Hi is exact
  static constexpr float kLn2Lo = 0x1.0bfbe8p-15f;
  static constexpr float kSqrt2 = 0x1.6a09e6p+0f;
  static constexpr float kMinNormal = 0x1p-126f;
  static constexpr float kDenormScale = 0x1p24f, kDenormExp = 24.0f;
  static constexpr int kTerms = 4;
  static constexpr float kR[4] = {2.0f / 3, 2.0f / 5, 2.0f / 7, 2.0f / 9};
};
template <>
struct LogConstants<double> {
  static constexpr double kLn2Hi = 0x1.62e42fee00000p-1;  // 32 significant bits
  static constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;
  static constexpr double kSqrt2 = 0x1.6a09e667f3bcdp+0;
  static constexpr double kMinNormal = 0x1p-1022;
  static constexpr double kDenormScale = 0x1p54, kDenormExp = 54.0;
  static constexpr int kTerms = 10;
  static constexpr double kR[10] = {2.0 / 3,  2.0 / 5,  2.0 / 7,  2.0 / 9,  2.0 / 11,
                                    2.0 / 13, 2.0 / 15, 2.0 / 17, 2.0 / 19, 2.0 / 21};
};

// log(x) + extra for finite x > 0 (denormals included); `extra` is a small correction folded into
// the low-order part (log1p's rounding term). Special values are left to the callers.
template <class T>
inline typename Simd<T>::V log_core(typename Simd<T>::V x, typename Simd<T>::V extra) {
  using S = Simd<T>;
  using C = LogConstants<T>;
  auto tiny = S::lt(x, S::set1(C::kMinNormal));  // getexp/getmant bit tricks need normal input
  x = S::select(tiny, S::mul(x, S::set1(C::kDenormScale)), x);
  auto e = S::sub(S::getexp(x), S::select(tiny, S::set1(C::kDenormExp), S::zero()));
  auto m = S::getmant(x);
  auto big = S::gt(m, S::set1(C::kSqrt2));
  m = S::select(big, S::mul(m, S::set1(T(0.5))), m);
  e = S::select(big, S::add(e, S::set1(T(1))), e);
  auto f = S::sub(m, S::set1(T(1)));
  auto s = S::div(f, S::add(f, S::set1(T(2))));
  auto z = S::mul(s, s);
  auto r = S::set1(C::kR[C::kTerms - 1]);
  for (int k = C::kTerms - 2; k >= 0; --k) r = S::fma(r, z, S::set1(C::kR[k]));
  r = S::mul(r, z);
  auto hfsq = S::mul(S::mul(f, f), S::set1(T(0.5)));
  auto low = S::fma(s, S::add(hfsq, r), S::fma(e, S::set1(C::kLn2Lo), extra));
  return S::fma(e, S::set1(C::kLn2Hi), S::sub(f, S::sub(hfsq, low)));
}

// tanh(v) / v - 1 for 0 <= v < 1/4, from tanh's odd Taylor series, whose terms fall about 40-fold
// each there: 5 terms past v reach float's precision, 11 double's.
template <class T>
inline typename Simd<T>::V tanh_series_correction(typename Simd<T>::V v) {
  using S = Simd<T>;
  // the series' coefficients of v^3, v^5, ..., v^23 (from the Bernoulli numbers)
  static constexpr double kC[11] = {-1.0 / 3,
                                    2.0 / 15,
                                    -17.0 / 315,
                                    62.0 / 2835,
                                    -1382.0 / 155925,
                                    21844.0 / 6081075,
                                    -929569.0 / 638512875,
                                    6404582.0 / 10854718875,
                                    -443861162.0 / 1856156927625,
                                    18888466084.0 / 194896477400625,
                                    -113927491862.0 / 2900518163668125};
  constexpr int terms = std::is_same_v<T, float> ? 5 : 11;
  const auto v2 = S::mul(v, v);
  auto p = S::set1(static_cast<T>(kC[terms - 1]));
  for (int i = terms - 2; i >= 0; --i) p = S::fma(p, v2, S::set1(static_cast<T>(kC[i])));
  return S::mul(v2, p);
}

// cap tanh(x / cap), given two_over_cap = 2 / cap (Gemma 2's logit softcap; with cap 1, tanh):
// sign(x) cap (1 - 2 / (exp(2 |x| / cap) + 1)) from |x| / cap = 1/4 up, where that cancels by at
// most 3 bits; below, where it would keep only about cap ulp(1) of a small result (a cap far above
// the logits would flatten them), |x| (1 + the series' correction), exact as |x| / cap underflows.
// About 2 ulp relative error throughout. -+inf -> -+cap, NaN stays NaN.
template <class T>
inline typename Simd<T>::V vsoftcap(typename Simd<T>::V x, typename Simd<T>::V two_over_cap,
                                    typename Simd<T>::V cap) {
  using S = Simd<T>;
  const auto one = S::set1(T(1)), zero = S::zero(), ax = S::abs(x);
  const auto y = S::mul(ax, two_over_cap);  // 2 |x| / cap
  const auto v = S::mul(y, S::set1(T(0.5)));
  auto magnitude = S::fma(ax, tanh_series_correction<T>(v), ax);
  const auto far = S::le(S::set1(T(0.25)), v);
  // the exp and the division only for vectors with a lane that needs them: none where the cap is
  // well above the logits (Gemma's 30 over unit-scale logits), so a predictable branch
  if (S::any(far))
    magnitude = S::select(far, S::mul(cap, S::sub(one, S::div(S::set1(T(2)), S::add(vexp<T>(y), one)))), magnitude);
  const auto r = S::select(S::lt(x, zero), S::sub(zero, magnitude), magnitude);
  return S::select(S::ne(x, x), x, r);
}

// Natural log: +inf -> +inf, 0 -> -inf, negative -> NaN, NaN propagates.
template <class T>
inline typename Simd<T>::V vlog(typename Simd<T>::V x) {
  using S = Simd<T>;
  constexpr T inf = std::numeric_limits<T>::infinity();
  auto r = log_core<T>(x, S::zero());
  r = S::select(S::eq(x, S::set1(inf)), x, r);
  r = S::select(S::eq(x, S::zero()), S::set1(-inf), r);
  r = S::select(S::lt(x, S::zero()), S::set1(std::numeric_limits<T>::quiet_NaN()), r);
  return S::select(S::ne(x, x), x, r);
}

// log(1 + x): u = 1 + x rounded, with its rounding error c (Fast2Sum, exact) fed back as c / u,
// since log(u + c) = log(u) + c/u to second order. -1 -> -inf, below -1 -> NaN, +inf -> +inf.
template <class T>
inline typename Simd<T>::V vlog1p(typename Simd<T>::V x) {
  using S = Simd<T>;
  constexpr T inf = std::numeric_limits<T>::infinity();
  const auto one = S::set1(T(1));
  auto u = S::add(one, x);
  auto c = S::select(S::gt(x, one), S::sub(one, S::sub(u, x)), S::sub(x, S::sub(u, one)));
  auto r = log_core<T>(u, S::div(c, u));
  r = S::select(S::eq(x, S::set1(inf)), x, r);
  r = S::select(S::eq(u, S::zero()), S::set1(-inf), r);
  r = S::select(S::lt(u, S::zero()), S::set1(std::numeric_limits<T>::quiet_NaN()), r);
  return S::select(S::ne(x, x), x, r);
}

}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
