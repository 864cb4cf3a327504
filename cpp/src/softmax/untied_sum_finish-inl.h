// Row finishers of log_softmax and logsumexp: the log of an untied sum (softmax_kernels.h), with
// the vector log and log1p of math-inl.h on one lane. Every path of a row (short rows in
// lockstep, pipelined rows, one row alone, a long row split across threads) finishes through
// these, so a row's bits never depend on the path its neighbours send it down. On one lane they
// still beat glibc's scalar log1pf + logf: those were a fifth of a 128-float log_softmax row and
// a third of a logsumexp row.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <cmath>
#include <limits>

#include "simd/math-inl.h"
#include "softmax/softmax_kernels.h"

namespace logitkit {
namespace LOGITKIT_TARGET {

template <class T>
T first_lane(typename Simd<T>::V v) {
  T lanes[Simd<T>::N];
  Simd<T>::store(lanes, v);
  return lanes[0];
}

template <class T>
T log1p_lane(T v) {
  return first_lane<T>(vlog1p<T>(Simd<T>::set1(v)));
}

template <class T>
T log_lane(T v) {
  return first_lane<T>(vlog<T>(Simd<T>::set1(v)));
}

// log(sum_i exp(c (x_i - m))) from the untied sum: log(k) + log1p(s / k) for k tied maxima.
template <class T>
T log_sum_from_untied(UntiedSum<T> u) {
  if (u.tied_weight == T(1)) return log1p_lane(u.sum);
  return log1p_lane(u.sum / u.tied_weight) + log_lane(u.tied_weight);
}

// log_sum_from_untied lane by lane, for tied >= 1: the same operations, so the same bits (s / 1
// is s, and log(1) is never added).
template <class T>
typename Simd<T>::V log_untied_sum_vector(typename Simd<T>::V sum, typename Simd<T>::V tied) {
  using S = Simd<T>;
  const auto l = vlog1p<T>(S::div(sum, tied));
  return S::select(S::eq(tied, S::set1(T(1))), l, S::add(l, vlog<T>(tied)));
}

template <class T>
T sign_of(T v) {
  return v > T(0) ? T(1) : (v < T(0) ? T(-1) : (v == T(0) ? T(0) : v));
}

// SciPy's logsumexp result for a row with max m (over weighted elements) and untied sum u taken
// with shift = (m finite ? m : 0). sign == nullptr: a negative sum gives NaN.
template <class T>
void finish_logsumexp(T m, UntiedSum<T> u, T* out, T* sign) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  const T nan = std::numeric_limits<T>::quiet_NaN();
  T result, sgn;
  if (m == -inf) {  // every element is -inf or has zero weight (the sum is 0), or a NaN hid the max
    const bool has_nan = std::isnan(u.sum) || std::isnan(u.tied_weight);
    result = has_nan ? nan : -inf;
    sgn = has_nan ? nan : T(0);
  } else if (m == inf) {  // the sum is +-inf unless the weights at +inf cancel or a NaN is present
    const bool defined = u.tied_weight != T(0) && !std::isnan(u.tied_weight) && !std::isnan(u.sum);
    result = defined ? inf : nan;
    sgn = defined ? sign_of(u.tied_weight) : nan;
  } else if (std::isnan(m)) {
    result = sgn = nan;
  } else if (!std::isfinite(u.tied_weight) || !std::isfinite(u.sum)) {
    // Infinite weights (or a NaN one): the sum is +-inf or NaN, as sum(b * exp(x)) gives it.
    const T total = u.tied_weight + u.sum;
    sgn = sign_of(total);
    result = std::fabs(total) + m;  // +inf, or NaN
  } else if (u.tied_weight != T(0)) {
    // sum = w (1 + r): log|w| + log1p(r) keeps full precision when the max term dominates.
    T r = u.sum / u.tied_weight;
    sgn = sign_of(r + T(1)) * sign_of(u.tied_weight);
    if (r < T(-1)) r = -r - T(2);
    const T w = std::fabs(u.tied_weight);
    result = (w == T(1) ? log1p_lane(r) : log1p_lane(r) + log_lane(w)) + m;  // log(1) = +0
  } else {  // the weights of the tied maxima cancel: the rest of the sum is all there is
    sgn = sign_of(u.sum);
    result = log_lane(std::fabs(u.sum)) + m;
  }
  if (sign) {
    *sign = sgn;
  } else if (sgn < T(0)) {
    result = nan;
  }
  *out = result;
}

}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
