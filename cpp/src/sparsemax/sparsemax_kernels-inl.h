// sparsemax kernels (sparsemax, entmax-1.5 and entmax-bisect forward and backward), written once over Simd<T> and compiled per ISA.
//
// Every forward op is p_i = g([X_i - m - tau]_+) with X = c x (c folds 1/temperature and the
// op's own scale), m = max X and tau in [-1, 0) chosen so that sum p = 1 (g = identity for
// sparsemax, square for entmax-1.5). Only entries with X_i > m - 1 can be nonzero, and for
// logits those are few, so no op sorts the row. entmax-bisect, p_i = [(alpha-1) X_i - tau]_+^(1/e)
// with e = alpha - 1, is written with tau = e (m + theta) - 1 as p_i = (1 + e w_i)^(1/e), w_i =
// X_i - m - theta (X = c x): [(alpha-1) X - tau] is 1 + O(e), so its power 1/e lost eps/e of
// relative precision (all of it for e near eps), while log1p(e w)/e -> w keeps that of w, and
// the op tends to softmax exp(w) continuously as alpha -> 1. Its candidates are X_i > m - 1/e.
//
//  1. collect   one SIMD read of x: running max plus compress-store of every X_i >= (running
//               max) - 1 into scratch. Entries that were candidates for an earlier, smaller
//               max are harmless extras (a superset); NaN is tracked on the side.
//               Every pass forms X = fl(c x) with a separately rounded multiply (the build uses
//               -ffp-contract=off), so the output pass sees the very X the threshold saw.
//  2. threshold on the candidates only (in place, shrinking):
//     sparsemax   Michelot's fixed point tau <- (sum_{v > tau} v - 1) / |{v > tau}| started at
//                 tau = -1. Every step keeps a superset of the support, so tau rises
//                 monotonically to the exact value and stops when a pass drops nothing; that
//                 value is the closed form of Martins & Astudillo on the support. Each pass is
//                 one SIMD sweep that sums, counts and compacts (compress_store) at once.
//     entmax-1.5  Newton from below on f(tau) = sum [v - tau]_+^2 - 1 (convex and decreasing,
//                 so the tangent's root never overshoots and every iterate keeps a superset of
//                 the support). Each pass also tries the exact closed form of Peters et al. on
//                 the kept set (the smaller root of k d^2 - 2 D1 d + D2 - 1 with D1, D2 the
//                 sums of v - tau, (v - tau)^2) and stops as soon as it is consistent (every
//                 kept v at or above it). Sums are taken relative to the current tau, so the
//                 step (D2 - 1) / (2 D1) is free of cancellation.
//     entmax-bisect  the entmax package's bisection (tau_lo = -1, tau_hi = -(1/n)^(alpha-1),
//                 at most n_iter halvings, f_m >= 0 moves tau_lo), on theta (the same points:
//                 theta_lo = 0, theta_hi = (1 - n^-e)/e -> log n), summing over the candidates
//                 only; candidates with e w <= -1 at theta_lo are dropped as it rises, and the
//                 loop stops early once the interval is below the precision of theta, which
//                 gives exactly the value the remaining iterations would.
//     Both exact solvers fall back to sorting the (few) remaining candidates (heapsort below)
//     if a pass limit is hit or rounding stalls them; no input seen in testing reaches it.
//  3. store     one SIMD read of x and write of y: y = g([c x - m - tau]_+) (entmax-bisect:
//               (1 + e w)^(1/e) where e w > -1, normalised by the bisection's last sum).
//
// Cost per element (float32, row in L1/L2): pass 1 reads 4 bytes (mul, compare, rare compress);
// pass 3 reads 4 and writes 4 bytes; threshold work is proportional to the candidate count
// (typically < 2% of a 32k-vocabulary row). No exp for sparsemax and entmax-1.5, so both are
// memory-bound once rows leave cache (two reads of x, one write of y); entmax-bisect evaluates
// one exp and one log per candidate per bisection step and per nonzero output, and is
// compute-bound only when most of the row is within 1 of the max.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <cmath>
#include <cstddef>
#include <limits>

#include "simd/loops-inl.h"
#include "simd/math-inl.h"
#include "sparsemax/sparsemax_kernels.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace sparsemax_impl {

// The functions holding a vector loop: every lambda and helper they call inlined into the loop.
// One translation unit per family gives GCC's inliner a small unit-growth budget, which left the
// per-vector lambdas as calls (sparsemax and entmax15 1.5-2x slower until these were flattened).
#define LOGITKIT_LOOP __attribute__((flatten))

template <class T>
constexpr T kInf = std::numeric_limits<T>::infinity();

// Sum of four accumulators' lanes, the lanes added in double: the threshold updates subtract 1
// from such sums, so rounding them in T first would cost relative precision in small tau.
template <class T>
double sum4_in_double(const typename Simd<T>::V (&acc)[4]) {
  using S = Simd<T>;
  T lanes[4 * S::N];
  for (int k = 0; k < 4; ++k) S::store(lanes + k * S::N, acc[k]);
  double total = 0;
  for (size_t i = 0; i < 4 * S::N; ++i) total += lanes[i];
  return total;
}

// The same in T (one horizontal reduction), where a plain sum is accurate enough (backward).
template <class T>
double sum4_fast(const typename Simd<T>::V (&acc)[4]) {
  return Simd<T>::reduce_add(sum4<T>(acc));
}

// ---- The maps g of the three ops, applied to d = X - m - tau (only where d > 0).

template <class T>
struct PowIdentity {  // sparsemax
  typename Simd<T>::V operator()(typename Simd<T>::V d) const { return d; }
};
template <class T>
struct PowSquare {  // entmax-1.5
  typename Simd<T>::V operator()(typename Simd<T>::V d) const { return Simd<T>::mul(d, d); }
};

// entmax-bisect's (1 + b)^(1/e), applied to b = e w (only where b > -1): exact forms for alpha =
// 2 and 1.5, else exp(log1p(b) / e), which keeps the relative precision of w as e -> 0.
template <class T>
struct OnePlusIdentity {  // alpha = 2
  typename Simd<T>::V operator()(typename Simd<T>::V b) const { return Simd<T>::add(Simd<T>::set1(T(1)), b); }
};
template <class T>
struct OnePlusSquare {  // alpha = 1.5
  typename Simd<T>::V operator()(typename Simd<T>::V b) const {
    const auto d = Simd<T>::add(Simd<T>::set1(T(1)), b);
    return Simd<T>::mul(d, d);
  }
};
template <class T>
struct OnePlusPower {
  T inv_e;  // 1 / (alpha - 1)
  typename Simd<T>::V operator()(typename Simd<T>::V b) const {
    return vexp<T>(Simd<T>::mul(Simd<T>::set1(inv_e), vlog1p<T>(b)));
  }
};

// ---- Pass 1: candidates.

template <class T>
struct Candidates {
  T max;         // max of c x (NaN lanes ignored)
  size_t count;  // c x values stored in scratch: a superset of those >= max - reach
  bool nan;      // some c x is NaN
};

template <class T>
LOGITKIT_LOOP Candidates<T> collect(const T* x, size_t n, T c, T reach, T* buf) {
  using S = Simd<T>;
  using V = typename S::V;
  using M = typename S::M;
  const V vc = S::set1(c);
  T m = -kInf<T>;
  V thr = S::set1(std::numeric_limits<T>::lowest());  // -inf is never a candidate
  M nan = S::lt(S::zero(), S::zero());
  size_t k = 0;
  auto step = [&](V v) {
    nan = S::mask_or(nan, S::ne(v, v));
    M keep = S::le(thr, v);
    if (S::any(keep)) {
      const T vm = S::reduce_max(v);
      if (vm > m) {
        m = vm;
        thr = S::set1(m - reach);  // >= lowest for finite m; +inf keeps only +inf
        keep = S::le(thr, v);
      }
      k += S::compress_store(buf + k, keep, v);
    }
  };
  for_vectors<S>(
      n, [&](size_t i, int) { step(S::mul(S::load(x + i), vc)); },
      [&](size_t i, size_t r) { step(S::mul(S::load_tail(x + i, r, -kInf<T>), vc)); });
  return {m, k, S::any(nan)};
}

// ---- Pass 2: thresholds.

template <class T>
struct Shrunk {
  size_t kept;
  double d1, d2;  // sums of d = v - tau and d^2 over the kept v
  T dmin;         // min d over the kept v (only with squares)
};

// Keeps v = buf[i] - shift where v > tau, compacted in place as v, and sums d = v - tau over
// them. Block partials are added by BlockSum (loops-inl.h's kSumBlock<T>).
template <class T, bool kSquares>
LOGITKIT_LOOP Shrunk<T> shrink(T* buf, size_t nb, T shift, T tau) {
  using S = Simd<T>;
  using V = typename S::V;
  const V vs = S::set1(shift), vt = S::set1(tau), zero = S::zero(), inf = S::set1(kInf<T>);
  size_t k = 0;
  BlockSum<T> d1, d2;
  V dmin = inf;
  for_blocks<T>(nb, [&](size_t b, size_t len) {
    V s1[4] = {zero, zero, zero, zero};
    V s2[4] = {zero, zero, zero, zero};
    auto step = [&](V raw, int a) {
      const V v = S::sub(raw, vs);
      const V d = S::sub(v, vt);
      const auto keep = S::gt(d, zero);
      const V dk = S::select(keep, d, zero);
      s1[a] = S::add(s1[a], dk);
      if constexpr (kSquares) {
        s2[a] = S::fma(dk, dk, s2[a]);
        dmin = S::min(dmin, S::select(keep, d, inf));
      }
      k += S::compress_store(buf + k, keep, v);
    };
    for_vectors<S>(
        len, [&](size_t i, int a) { step(S::load(buf + b + i), a); },
        [&](size_t i, size_t r) { step(S::load_tail(buf + b + i, r, -kInf<T>), 0); });
    d1.add(sum4_in_double<T>(s1));
    if constexpr (kSquares) d2.add(sum4_in_double<T>(s2));
  });
  return {k, d1.value(), d2.value(), S::reduce_min(dmin)};
}

// Descending heapsort (min-heap), insertion sort for short arrays: the fallback only.
template <class T>
void sift_down(T* a, size_t root, size_t n) {
  const T x = a[root];
  for (;;) {
    size_t child = 2 * root + 1;
    if (child >= n) break;
    if (child + 1 < n && a[child + 1] < a[child]) ++child;
    if (!(a[child] < x)) break;
    a[root] = a[child];
    root = child;
  }
  a[root] = x;
}

template <class T>
void sort_descending(T* a, size_t n) {
  if (n <= 16) {
    for (size_t i = 1; i < n; ++i) {
      const T x = a[i];
      size_t j = i;
      for (; j > 0 && a[j - 1] < x; --j) a[j] = a[j - 1];
      a[j] = x;
    }
    return;
  }
  for (size_t i = n / 2; i-- > 0;) sift_down(a, i, n);
  for (size_t end = n - 1; end > 0; --end) {
    const T t = a[0];
    a[0] = a[end];
    a[end] = t;
    sift_down(a, 0, end);
  }
}

// Exact threshold from the sorted values (the papers' closed forms): the largest k whose
// threshold tau_k stays below the k-th largest value.
template <class T, bool kEntmax15>
T sorted_threshold(T* v, size_t n) {
  sort_descending(v, n);
  double s1 = 0, s2 = 0, tau = -1;
  for (size_t j = 0; j < n; ++j) {
    const double vj = v[j], k = static_cast<double>(j + 1);
    s1 += vj;
    s2 += vj * vj;
    double t;
    if constexpr (kEntmax15) {
      const double mean = s1 / k, delta = (1 - (s2 - s1 * mean)) / k;
      t = mean - std::sqrt(delta > 0 ? delta : 0.0);
    } else {
      t = (s1 - 1) / k;
    }
    if (t < vj) tau = t;
  }
  return static_cast<T>(tau);
}

// Above this many passes the solvers sort instead (Michelot needs a handful on real data).
constexpr int kMaxShrinkPasses = 64;

// buf holds raw candidates X (first pass subtracts m); returns tau relative to m. Updates are
// formed in double and rounded once, so tau keeps full relative precision when it is small.
template <class T>
T sparsemax_threshold(T* buf, size_t nb, T m) {
  T tau = T(-1), shift = m;
  bool from_set = false;  // tau is the Michelot value of the current set
  for (int pass = 0; pass < kMaxShrinkPasses; ++pass) {
    const Shrunk<T> s = shrink<T, false>(buf, nb, shift, tau);
    shift = T(0);
    if (s.kept == 0) return tau;  // unreachable: the max (v = 0) stays above every tau < 0
    const T next = static_cast<T>(static_cast<double>(tau) + (s.d1 - 1.0) / static_cast<double>(s.kept));
    // Converged (nothing dropped): the same closed form, now with sums taken next to tau.
    if (from_set && s.kept == nb) return next;
    nb = s.kept;
    if (next > tau) tau = next;  // rounding must not let tau fall below an earlier bound
    from_set = true;
  }
  return sorted_threshold<T, false>(buf, nb);
}

template <class T>
T entmax15_threshold(T* buf, size_t nb, T m) {
  constexpr double eps = std::numeric_limits<T>::epsilon();
  T tau = T(-1), shift = m;
  int refinements = 0;
  for (int pass = 0; pass < kMaxShrinkPasses; ++pass) {
    const Shrunk<T> s = shrink<T, true>(buf, nb, shift, tau);
    shift = T(0);
    nb = s.kept;
    if (nb == 0) return tau;  // unreachable: the max (v = 0) stays above every tau < 0
    const double k = static_cast<double>(nb), d2m1 = s.d2 - 1.0;
    const double disc = s.d1 * s.d1 - k * d2m1;
    if (disc > 0) {
      const double delta = d2m1 / (s.d1 + std::sqrt(disc));  // smaller root, no cancellation
      if (delta <= static_cast<double>(s.dmin)) {
        const double exact = static_cast<double>(tau) + delta;
        // disc cancels when the pivot is far below tau (d^2 sums of a dense row, taken in T):
        // bound the error it puts in delta and, if it exceeds a few ulp, solve again from
        // just below (the next pass takes its sums next to the answer).
        const double err = 2 * eps * std::fabs(delta) * (s.d1 * s.d1 + k * s.d2) / disc;
        const T below = static_cast<T>(exact - err);
        if (err <= 4 * eps * std::fabs(exact) || refinements == 2 || !(below > tau)) return static_cast<T>(exact);
        tau = below;
        ++refinements;
        continue;
      }
    }
    const T next = static_cast<T>(static_cast<double>(tau) + d2m1 / (2 * s.d1));  // Newton step from below
    if (!(next > tau)) break;
    tau = next;
  }
  return sorted_threshold<T, true>(buf, nb);
}

// One bisection step's sum of g(e (v - theta)) over the candidates where that is > -1; compacts
// away the v with e (v - keep_above) <= -1 (zero for every theta >= keep_above too).
template <class T, class G>
LOGITKIT_LOOP double bisect_pass(T* buf, size_t& nb, T shift, T keep_above, T theta, T e, const G& g) {
  using S = Simd<T>;
  using V = typename S::V;
  const V vs = S::set1(shift), vt = S::set1(theta), vkeep = S::set1(keep_above), ve = S::set1(e),
          neg1 = S::set1(T(-1)), zero = S::zero();
  size_t k = 0;
  BlockSum<T> total;
  for_blocks<T>(nb, [&](size_t b, size_t len) {
    V acc[4] = {zero, zero, zero, zero};
    auto step = [&](V raw, int a) {
      const V v = S::sub(raw, vs);
      const V ew = S::mul(ve, S::sub(v, vt));
      const auto pos = S::gt(ew, neg1);
      if (S::any(pos)) acc[a] = S::add(acc[a], S::select(pos, g(ew), zero));
      k += S::compress_store(buf + k, S::gt(S::mul(ve, S::sub(v, vkeep)), neg1), v);
    };
    for_vectors<S>(
        len, [&](size_t i, int a) { step(S::load(buf + b + i), a); },
        [&](size_t i, size_t r) { step(S::load_tail(buf + b + i, r, -kInf<T>), 0); });
    total.add(sum4_in_double<T>(acc));
  });
  nb = k;
  return total.value();
}

struct BisectResult {
  double theta, sum;
};

// theta_m (the last point evaluated) and the sum there; e = alpha - 1. When that sum is 0 (the
// midpoints reached the bracket's top end in T's rounding, which is where the exact threshold of
// a row of equal values lies: 1 - e theta rounds to 0), the last point with mass instead, so that
// the output is a distribution (the entmax package divides 0 by 0 there).
template <class T, class G>
BisectResult bisect_threshold(T* buf, size_t nb, T m, size_t n, T e, int n_iter, const G& g) {
  T theta_lo = T(0), shift = m, theta_m = theta_lo;
  // tau_hi - tau_lo = 1 - n^-e, divided by e: -expm1 keeps it exact down to its limit log n.
  const double ed = static_cast<double>(e);
  T dm = static_cast<T>(-std::expm1(-ed * std::log(static_cast<double>(n))) / ed);
  double sum = 0;
  BisectResult with_mass{0.0, 0.0};
  for (int it = 0; it < n_iter; ++it) {
    dm = dm / T(2);
    const T t = theta_lo + dm;
    const bool stalled = !(t > theta_lo);  // every later step would evaluate t == theta_lo again
    sum = bisect_pass(buf, nb, shift, theta_lo, t, e, g);
    shift = T(0);
    theta_m = t;
    if (sum > 0) with_mass = {static_cast<double>(t), sum};
    if (sum - 1.0 >= 0) theta_lo = t;
    if (stalled) break;
  }
  if (!(sum > 0) && with_mass.sum > 0) return with_mass;
  return {static_cast<double>(theta_m), sum};
}

// ---- Pass 3: outputs.

template <class T, class Pow>
LOGITKIT_LOOP void store_clipped(const T* x, T* y, size_t n, T c, T m, T tau, const Pow& pw) {
  using S = Simd<T>;
  const auto vc = S::set1(c), vm = S::set1(m), vt = S::set1(tau), zero = S::zero();
  auto f = [&](typename S::V xv) { return pw(S::max(S::sub(S::sub(S::mul(xv, vc), vm), vt), zero)); };
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(y + i, f(S::load(x + i))); },
      [&](size_t i, size_t r) { S::store_tail(y + i, f(S::load_tail(x + i, r, T(0))), r); });
}

// y = scale g(e (c x - m - theta)) where that is > -1, else 0 (bisect_pass's arithmetic):
// vectors with no such lane (most of a sparse row) skip g entirely.
template <class T, class G>
LOGITKIT_LOOP void store_powered(const T* x, T* y, size_t n, T c, T m, T theta, T e, T scale, const G& g) {
  using S = Simd<T>;
  const auto vc = S::set1(c), vm = S::set1(m), vt = S::set1(theta), ve = S::set1(e), neg1 = S::set1(T(-1)),
             vscale = S::set1(scale), zero = S::zero();
  auto f = [&](typename S::V xv) {
    const auto ew = S::mul(ve, S::sub(S::sub(S::mul(xv, vc), vm), vt));
    const auto pos = S::gt(ew, neg1);
    if (!S::any(pos)) return zero;
    return S::mul(S::select(pos, g(ew), zero), vscale);
  };
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(y + i, f(S::load(x + i))); },
      [&](size_t i, size_t r) { S::store_tail(y + i, f(S::load_tail(x + i, r, T(0))), r); });
}

// A row whose max is +inf: the mass is split evenly over its +inf entries.
template <class T>
LOGITKIT_LOOP void store_infinite(const T* x, T* y, size_t n, T c, const T* cand, size_t count) {
  using S = Simd<T>;
  size_t infs = 0;
  for (size_t i = 0; i < count; ++i) infs += cand[i] == kInf<T> ? 1 : 0;
  const auto vc = S::set1(c), inf = S::set1(kInf<T>), w = S::set1(T(1) / static_cast<T>(infs)), zero = S::zero();
  auto f = [&](typename S::V xv) { return S::select(S::eq(S::mul(xv, vc), inf), w, zero); };
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(y + i, f(S::load(x + i))); },
      [&](size_t i, size_t r) { S::store_tail(y + i, f(S::load_tail(x + i, r, T(0))), r); });
}

template <class T>
LOGITKIT_LOOP void fill(T* y, size_t n, T value) {
  using S = Simd<T>;
  const auto v = S::set1(value);
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(y + i, v); }, [&](size_t i, size_t r) { S::store_tail(y + i, v, r); });
}

// Shared special cases: NaN anywhere or an all -inf row gives NaN; a +inf max splits the mass
// over the +inf entries; otherwise solve(candidates >= max - reach) finishes the row.
template <class T, class Solve>
void forward_row(const T* x, T* y, size_t n, T c, T reach, T* buf, Solve&& solve) {
  if (n == 0) return;
  const Candidates<T> cand = collect(x, n, c, reach, buf);
  if (cand.nan || cand.max == -kInf<T>) {
    fill(y, n, std::numeric_limits<T>::quiet_NaN());
  } else if (cand.max == kInf<T>) {
    store_infinite(x, y, n, c, buf, cand.count);
  } else {
    solve(cand);
  }
}

template <class T>
void sparsemax_rows(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c, T* buf) {
  for (size_t r = 0; r < rows; ++r) {
    const T* xr = x + ptrdiff_t(r) * ldx;
    T* yr = y + ptrdiff_t(r) * ldy;
    forward_row(xr, yr, n, c, T(1), buf, [&](const Candidates<T>& cand) {
      const T tau = sparsemax_threshold(buf, cand.count, cand.max);
      store_clipped(xr, yr, n, c, cand.max, tau, PowIdentity<T>{});
    });
  }
}

// entmax15(x) = [x/2 - tau]_+^2: the 1/2 is folded into c (exact scaling).
template <class T>
void entmax15_rows(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c, T* buf) {
  const T half_c = c * T(0.5);
  for (size_t r = 0; r < rows; ++r) {
    const T* xr = x + ptrdiff_t(r) * ldx;
    T* yr = y + ptrdiff_t(r) * ldy;
    forward_row(xr, yr, n, half_c, T(1), buf, [&](const Candidates<T>& cand) {
      const T tau = entmax15_threshold(buf, cand.count, cand.max);
      store_clipped(xr, yr, n, half_c, cand.max, tau, PowSquare<T>{});
    });
  }
}

// e = alpha - 1 > 0 (exact in T). Only X > m - 1/e can be in the support (e w > -1, theta >= 0).
template <class T, class G>
void entmax_bisect_rows_with(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c, T e,
                             int n_iter, T* buf, const G& g) {
  const T reach = T(1) / e;
  for (size_t r = 0; r < rows; ++r) {
    const T* xr = x + ptrdiff_t(r) * ldx;
    T* yr = y + ptrdiff_t(r) * ldy;
    forward_row(xr, yr, n, c, reach, buf, [&](const Candidates<T>& cand) {
      const BisectResult b = bisect_threshold(buf, cand.count, cand.max, n, e, n_iter, g);
      store_powered(xr, yr, n, c, cand.max, static_cast<T>(b.theta), e, static_cast<T>(1.0 / b.sum), g);
    });
  }
}

template <class T>
void entmax_bisect_rows(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c, T alpha,
                        int n_iter, T* buf) {
  const T e = alpha - T(1);
  if (alpha == T(2)) {
    entmax_bisect_rows_with(x, y, rows, n, ldx, ldy, c, e, n_iter, buf, OnePlusIdentity<T>{});
  } else if (alpha == T(1.5)) {
    entmax_bisect_rows_with(x, y, rows, n, ldx, ldy, c, e, n_iter, buf, OnePlusSquare<T>{});
  } else {
    entmax_bisect_rows_with(x, y, rows, n, ldx, ldy, c, e, n_iter, buf, OnePlusPower<T>{T(1) / e});
  }
}

// ---- Backward: dx = c (g dy - g q), q = sum(g dy) / sum(g), g = G(y). Two passes over y and
// dy (the second also writes dx): 8 bytes read twice and 4 written per float element; no exp
// except entmax-bisect with a general alpha (one exp and one log per nonzero y). Memory-bound.

// kCached: g costs an exp and a log, so pass 1 keeps it in scratch for pass 2.
template <class T>
struct GradSupport {  // sparsemax: 1 on the support
  static constexpr bool kCached = false;
  typename Simd<T>::V operator()(typename Simd<T>::V y) const {
    using S = Simd<T>;
    return S::select(S::gt(y, S::zero()), S::set1(T(1)), S::zero());
  }
};
template <class T>
struct GradSqrt {  // entmax-1.5
  static constexpr bool kCached = false;
  typename Simd<T>::V operator()(typename Simd<T>::V y) const { return Simd<T>::sqrt(y); }
};
template <class T>
struct GradLinear {  // entmax-bisect with alpha = 1 (softmax): y on the support
  static constexpr bool kCached = false;
  typename Simd<T>::V operator()(typename Simd<T>::V y) const {
    using S = Simd<T>;
    return S::select(S::gt(y, S::zero()), y, S::zero());
  }
};
template <class T>
struct GradPower {  // entmax-bisect: y^(2 - alpha) on the support
  static constexpr bool kCached = true;
  T e;
  typename Simd<T>::V operator()(typename Simd<T>::V y) const {
    using S = Simd<T>;
    const auto pos = S::gt(y, S::zero());
    if (!S::any(pos)) return S::zero();
    return S::select(pos, vexp<T>(S::mul(S::set1(e), log_core<T>(y, S::zero()))), S::zero());
  }
};

// gs: n elements of scratch (used when G::kCached; dx may alias y or dy, so g cannot live in dx).
template <class T, class G>
LOGITKIT_LOOP void backward_row(const T* y, const T* dy, T* dx, size_t n, T c, const G& g, T* gs) {
  using S = Simd<T>;
  using V = typename S::V;
  BlockSum<T> sum_gdy, sum_g;
  for_blocks<T>(n, [&](size_t b, size_t len) {
    V a[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
    V w[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
    auto step = [&](V yv, V dyv, int k, size_t at, size_t r) {
      const V gv = g(yv);
      if constexpr (G::kCached) {
        if (r == S::N) {
          S::store(gs + at, gv);
        } else {
          S::store_tail(gs + at, gv, r);
        }
      }
      a[k] = S::fma(gv, dyv, a[k]);
      w[k] = S::add(w[k], gv);
    };
    for_vectors<S>(
        len, [&](size_t i, int k) { step(S::load(y + b + i), S::load(dy + b + i), k, b + i, S::N); },
        [&](size_t i, size_t r) {
          step(S::load_tail(y + b + i, r, T(0)), S::load_tail(dy + b + i, r, T(0)), 0, b + i, r);
        });
    sum_gdy.add(sum4_fast<T>(a));
    sum_g.add(sum4_fast<T>(w));
  });
  const auto vq = S::set1(static_cast<T>(sum_gdy.value() / sum_g.value())), vc = S::set1(c);
  auto f = [&](size_t i, V yv, V dyv, size_t r) {
    V gv;
    if constexpr (G::kCached) {
      gv = r == S::N ? S::load(gs + i) : S::load_tail(gs + i, r, T(0));
    } else {
      gv = g(yv);
    }
    return S::mul(S::fnma(vq, gv, S::mul(gv, dyv)), vc);
  };
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(dx + i, f(i, S::load(y + i), S::load(dy + i), S::N)); },
      [&](size_t i, size_t r) {
        S::store_tail(dx + i, f(i, S::load_tail(y + i, r, T(0)), S::load_tail(dy + i, r, T(0)), r), r);
      });
}

template <class T, class G>
void backward_rows(const T* y, const T* dy, T* dx, size_t rows, size_t n, ptrdiff_t ldy, ptrdiff_t lddy,
                   ptrdiff_t lddx, T c, const G& g, T* gs) {
  if (n == 0) return;
  for (size_t r = 0; r < rows; ++r) backward_row(y + ptrdiff_t(r) * ldy, dy + ptrdiff_t(r) * lddy, dx + ptrdiff_t(r) * lddx, n, c, g, gs);
}

template <class T>
void sparsemax_backward_rows(const T* y, const T* dy, T* dx, size_t rows, size_t n, ptrdiff_t ldy,
                             ptrdiff_t lddy, ptrdiff_t lddx, T c, T* gs) {
  backward_rows(y, dy, dx, rows, n, ldy, lddy, lddx, c, GradSupport<T>{}, gs);
}

template <class T>
void entmax15_backward_rows(const T* y, const T* dy, T* dx, size_t rows, size_t n, ptrdiff_t ldy,
                            ptrdiff_t lddy, ptrdiff_t lddx, T c, T* gs) {
  backward_rows(y, dy, dx, rows, n, ldy, lddy, lddx, c, GradSqrt<T>{}, gs);
}

template <class T>
void entmax_bisect_backward_rows(const T* y, const T* dy, T* dx, size_t rows, size_t n, ptrdiff_t ldy,
                                 ptrdiff_t lddy, ptrdiff_t lddx, T c, T alpha, T* gs) {
  if (alpha == T(2)) {
    backward_rows(y, dy, dx, rows, n, ldy, lddy, lddx, c, GradSupport<T>{}, gs);
  } else if (alpha == T(1.5)) {
    backward_rows(y, dy, dx, rows, n, ldy, lddy, lddx, c, GradSqrt<T>{}, gs);
  } else if (alpha == T(1)) {
    backward_rows(y, dy, dx, rows, n, ldy, lddy, lddx, c, GradLinear<T>{}, gs);
  } else {
    backward_rows(y, dy, dx, rows, n, ldy, lddy, lddx, c, GradPower<T>{T(2) - alpha}, gs);
  }
}

template <class T>
SparsemaxKernels<T> make_sparsemax_kernels() {
  SparsemaxKernels<T> k{};
  k.sparsemax_rows = sparsemax_rows<T>;
  k.entmax15_rows = entmax15_rows<T>;
  k.entmax_bisect_rows = entmax_bisect_rows<T>;
  k.sparsemax_backward_rows = sparsemax_backward_rows<T>;
  k.entmax15_backward_rows = entmax15_backward_rows<T>;
  k.entmax_bisect_backward_rows = entmax_bisect_backward_rows<T>;
  return k;
}

}  // namespace sparsemax_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit

#undef LOGITKIT_LOOP
