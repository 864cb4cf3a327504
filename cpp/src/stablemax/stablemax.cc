// stablemax / log_stablemax and their backward: operands declared to the row driver
// (runtime/row_driver.h) and the per-row choice of the sum's power-of-two scale. Kernels live in
// stablemax_kernels-inl.h.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "logitkit/error.h"
#include "logitkit/stablemax.h"
#include "runtime/kernel_table.h"
#include "runtime/loss_support.h"
#include "runtime/overflow.h"
#include "runtime/row_driver.h"
#include "stablemax/stablemax_kernels.h"

namespace logitkit {
namespace {

// Sums outside [2^-K, 2^K) are recomputed with scale 2^-K (large) or 2^K (small): then 1/S' and
// every s * sc that matters stay normal numbers. K leaves room for 2^32 elements of T's max value.
template <class T>
struct Scale;
template <>
struct Scale<float> {
  static constexpr int kK = 64;
};
template <>
struct Scale<double> {
  static constexpr int kK = 512;
};

// Per-row scalars of pass 2 (see stablemax_kernels.h for the notation).
template <class T>
struct RowScale {
  T sc;
  double sum;  // S' = sc * sum s
  T inv() const { return static_cast<T>(1.0 / sum); }
  T w() const {  // sc / S' = 1 / S; clamped only for a row of -max() entries (S = 1/max)
    const double v = static_cast<double>(sc) / sum;
    if (sum == 0.0) return static_cast<T>(v);  // all -inf: keeps 0 * inf = NaN
    return static_cast<T>(std::min(v, static_cast<double>(std::numeric_limits<T>::max())));
  }
  double log_sum() const { return std::log(sum) - std::log(static_cast<double>(sc)); }
};

// Runs pass 1 (`pass(sc)` returns StablemaxSums) and repeats it once with a rescale when the sum
// leaves the normal window. NaN, 0 (all -inf) and +inf-caused sums keep their IEEE meaning.
template <class T, class Pass>
StablemaxSums scaled_pass(Pass&& pass, T& sc) {
  const double hi = std::ldexp(1.0, Scale<T>::kK), lo = std::ldexp(1.0, -Scale<T>::kK);
  sc = T(1);
  StablemaxSums r = pass(sc);
  // The sum is taken in T within blocks, so a float overflow shows up as inf here.
  const double s = static_cast<T>(r.sum);
  if (std::isnan(s) || s == 0.0 || (s >= lo && s < hi)) return r;
  sc = static_cast<T>(s >= hi ? lo : hi);
  return pass(sc);
}

// A row whose c x overflows (c > 1 and x within a factor c of T's max), in double with explicit
// exponents: a = 1 + |c x| = 2^k a' with a' = 2^-k + |x (c 2^-k)| (no overflow: c 2^-k < 1), and
// s = m 2^E with m in [0.5, 2] from frexp(a'). With E* = max E, t = s / 2^E* is a double that is
// exactly s up to the power of two (terms below 2^-1074 t_max are dropped, their weight is nil),
// so p = t / sum t. The largest c x overflowing is the limit of the math, not inf / inf.
template <class T>
struct ExactRow {
  std::vector<double> t;  // s / 2^E*
  std::vector<double> a;  // a' = a / 2^k
  double ck = 0.0;        // c / 2^k, so c / a = ck / a' (the VJP's c s'/s)
  double rest = 0.0, sum = 0.0, t_top = 0.0;
  std::vector<int> e;  // E - E*
  std::vector<double> m;
  std::vector<double> ma;  // a' = ma 2^ea, ma in [0.5, 1)
  std::vector<int> ea;

  ExactRow(const T* x, size_t n, T c) : t(n), a(n), e(n), m(n), ma(n), ea(n) {
    const int k = std::ilogb(static_cast<double>(c)) + 1;
    const double ek = std::ldexp(1.0, -k);
    ck = std::ldexp(static_cast<double>(c), -k);
    int emax = std::numeric_limits<int>::min();
    for (size_t i = 0; i < n; ++i) {
      a[i] = ek + std::abs(static_cast<double>(x[i]) * ck);
      if (std::isinf(a[i])) {  // x = -inf: s = 0
        m[i] = 0.0;
        e[i] = std::numeric_limits<int>::min();
        continue;
      }
      ma[i] = std::frexp(a[i], &ea[i]);
      const bool pos = !(x[i] < T(0));
      m[i] = pos ? ma[i] : 1.0 / ma[i];
      e[i] = pos ? ea[i] + k : -(ea[i] + k);
      emax = std::max(emax, e[i]);
    }
    size_t top = 0;
    for (size_t i = 0; i < n; ++i) {
      if (m[i] != 0.0) e[i] -= emax;
      t[i] = m[i] == 0.0 ? 0.0 : std::ldexp(m[i], e[i]);
      if (t[i] > t[top]) top = i;
    }
    for (size_t i = 0; i < n; ++i) rest += i == top ? 0.0 : t[i];
    t_top = t[top];
    sum = rest + t_top;
  }
  double p(size_t i) const { return t[i] / sum; }
  // v c / a, divided last: the quotient may be subnormal, and then it is rounded only once.
  double times_c_over_a(size_t i, double v) const { return v * ck / a[i]; }
  // v c p / a with the powers of two applied last (p alone may be subnormal where c p / a is not).
  double times_c_p_over_a(size_t i, double v) const {
    if (m[i] == 0.0) return 0.0 * v;
    return std::ldexp(v * ck * (m[i] / ma[i]) / sum, e[i] - ea[i]);
  }
  double log_p(size_t i) const {
    if (t[i] == t_top) return -std::log1p(rest / t_top);  // p near 1: no cancellation
    if (m[i] == 0.0) return -std::numeric_limits<double>::infinity();
    const double q = t[i] / sum;
    if (q >= std::numeric_limits<double>::min()) return std::log(q);
    return std::log(m[i] / sum) + e[i] * 0.6931471805599453;  // |log p| > 708: no cancellation
  }
};

// row(x, dy, y, n) for every row of the declared operands (dy: -1 for none). Each kernel reads
// x[i] (and dy[i]) before writing y[i], so in-place calls need no copy.
template <class T, class Row>
void for_each_row(RowDriver& d, int kX, int kDy, int kY, Row&& row) {
  if (d.rows() == 0 || d.n() == 0) return;
  const size_t n = static_cast<size_t>(d.n());
  d.run([&](const RowBatch& b) {
    for (size_t t = 0; t < b.rows; ++t)
      row(b.row<const T>(kX, t), kDy >= 0 ? b.row<const T>(kDy, t) : nullptr, b.row<T>(kY, t), n);
  });
}

template <class T>
void forward(ArrayView<const T> x, ArrayView<T> y, int axis, const StablemaxOptions& options, bool log) {
  RowDriver d(axis);
  const int kX = d.input(x, "x"), kY = d.output(y, "y");
  d.check();
  const T c = inverse_temperature<T>(options.temperature);
  const StablemaxKernels<T>& k = kernels().stablemax.get<T>();
  for_each_row<T>(d, kX, -1, kY, [&](const T* xr, const T*, T* yr, size_t n) {
    T sc;
    const StablemaxSums s = scaled_pass<T>(
        [&](T scale) { return log ? k.sum_top(xr, n, c, scale) : k.sum(xr, n, c, scale); },
        sc);
    if (!(s.amax < std::numeric_limits<double>::infinity()) && scaled_row_overflows(xr, n, c)) {
      const ExactRow<T> e(xr, n, c);
      for (size_t i = 0; i < n; ++i) yr[i] = static_cast<T>(log ? e.log_p(i) : e.p(i));
      return;
    }
    const RowScale<T> rs{sc, s.sum};
    if (log) {
      // log p of the top entries: -log(S / s_top) = -log1p(rest / s_top); NaN for top = +inf.
      const T top = static_cast<T>(s.top);
      const double s_top = static_cast<double>(scaled_s_scalar(top, sc));
      const double y_top = std::isinf(s_top) ? std::numeric_limits<double>::quiet_NaN() : -std::log1p(s.other / s_top);
      k.log_store(xr, yr, n, c, sc, rs.inv(), rs.w(), top, static_cast<T>(y_top), static_cast<T>(rs.log_sum()));
    } else {
      k.store(xr, yr, n, c, sc, rs.inv(), rs.w());
    }
  });
}

template <class T>
void backward(ArrayView<const T> x, ArrayView<const T> dy, ArrayView<T> dx, int axis, const StablemaxOptions& options,
              bool log) {
  RowDriver d(axis);
  const int kX = d.input(x, "x"), kDy = d.input(dy, "dy"), kDx = d.output(dx, "dx");
  d.check();
  const T c = inverse_temperature<T>(options.temperature);
  const StablemaxKernels<T>& k = kernels().stablemax.get<T>();
  for_each_row<T>(d, kX, kDy, kDx, [&](const T* xr, const T* dr, T* yr, size_t n) {
    T sc;
    const StablemaxSums s = scaled_pass<T>(
        [&](T scale) { return log ? k.sum_total(xr, dr, n, c, scale) : k.sum_dot(xr, dr, n, c, scale); }, sc);
    if (!(s.amax < std::numeric_limits<double>::infinity()) && scaled_row_overflows(xr, n, c)) {
      const ExactRow<T> e(xr, n, c);
      double g = 0.0;  // sum dy (log) or sum p dy
      for (size_t i = 0; i < n; ++i) g += log ? static_cast<double>(dr[i]) : e.p(i) * static_cast<double>(dr[i]);
      for (size_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(dr[i]);
        yr[i] = static_cast<T>(log ? e.times_c_over_a(i, d - g * e.p(i)) : e.times_c_p_over_a(i, d - g));
      }
      return;
    }
    const RowScale<T> rs{sc, s.sum};
    if (log) {  // G = sum dy
      k.log_backward_store(xr, dr, yr, n, c, sc, rs.inv(), rs.w(), static_cast<T>(s.other));
    } else {  // g = sum p dy = (sum sc s dy) / S'
      k.backward_store(xr, dr, yr, n, c, sc, rs.inv(), rs.w(), static_cast<T>(s.other / s.sum));
    }
  });
}

// StableMax cross-entropy through class_index_loss: per row the scaled sums with the largest
// entry apart (sum_top), log p_t (-log1p(rest / s_top) for a largest target: no cancellation), and
// with the gradient log-StableMax's VJP for dy = -k onehot(t): c (k p_i - k [i == t]) / a_i.
template <class T, class Index>
double stablemax_ce(ArrayView<const T> x, ArrayView<const Index> target, const LossOptions& options,
                    const StablemaxOptions& sm, const LossWeights<T>& weights, ArrayView<T> loss,
                    const LossGrad<T>& grad) {
  const T c = inverse_temperature<T>(sm.temperature);
  const StablemaxKernels<T>& k = kernels().stablemax.get<T>();
  const int axis = options.axis < 0 ? options.axis + x.ndim : options.axis;
  const size_t n = axis >= 0 && axis < x.ndim && x.data ? static_cast<size_t>(x.shape[axis]) : 0;
  const std::vector<T> zeros(given(grad.grad) ? n : 0, T(0));  // the VJP's dy row but for its target
  return class_index_loss<T, Index>(
      x, "logits", target, options, weights, loss, grad, RowPolicy{},
      [&](const T* xr, const T*, size_t t, T* g, double kk, const RowBatch&) -> double {
        T sc;
        const StablemaxSums s = scaled_pass<T>([&](T scale) { return k.sum_top(xr, n, c, scale); }, sc);
        if (!(s.amax < std::numeric_limits<double>::infinity()) && scaled_row_overflows(xr, n, c)) {
          const ExactRow<T> e(xr, n, c);
          if (g)
            for (size_t i = 0; i < n; ++i) g[i] = static_cast<T>(e.times_c_over_a(i, kk * (e.p(i) - (i == t ? 1.0 : 0.0))));
          return -e.log_p(t);
        }
        const RowScale<T> rs{sc, s.sum};
        const T top = static_cast<T>(s.top), cx_t = c * xr[t];
        const double a_t = 1.0 + std::abs(static_cast<double>(cx_t));
        const bool is_top = cx_t == top;
        const double s_top = static_cast<double>(scaled_s_scalar(top, sc));
        double log_p;
        if (is_top) {
          log_p = std::isinf(s_top) ? std::numeric_limits<double>::quiet_NaN() : -std::log1p(s.other / s_top);
        } else {
          log_p = std::log(static_cast<double>(scaled_s_scalar(cx_t, sc))) - std::log(s.sum);
        }
        if (g) {
          k.log_backward_store(xr, zeros.data(), g, n, c, sc, rs.inv(), rs.w(), static_cast<T>(-kk));
          // the target's c k (p_t - 1) / a_t, with 1 - p_t = rest / S' for a largest target
          const double p_minus_1 = is_top ? -s.other / s.sum : std::expm1(log_p);
          g[t] = static_cast<T>(static_cast<double>(c) * kk * p_minus_1 / a_t);
        }
        return -log_p;
      });
}

}  // namespace

#define LOGITKIT_SPECIALIZE_CE(T, Index)                                                                          \
  template <>                                                                                                     \
  double stablemax_cross_entropy<T, Index>(InputView<T> logits, ArrayView<const Index> target,                    \
                                           const LossOptions& options, const StablemaxOptions& stablemax,        \
                                           const LossWeights<T>& weights, ArrayView<T> loss, const LossGrad<T>& grad) { \
    return stablemax_ce<T, Index>(logits, target, options, stablemax, weights, loss, grad);                      \
  }
LOGITKIT_SPECIALIZE_CE(float, int32_t)
LOGITKIT_SPECIALIZE_CE(float, int64_t)
LOGITKIT_SPECIALIZE_CE(double, int32_t)
LOGITKIT_SPECIALIZE_CE(double, int64_t)
#undef LOGITKIT_SPECIALIZE_CE

// The float and double specializations that the public header declares (its primary templates
// static_assert for any other element type).
#define LOGITKIT_SPECIALIZE(T)                                                                           \
  template <>                                                                                            \
  void stablemax<T>(InputView<T> x, ArrayView<T> y, int axis, const StablemaxOptions& options) {        \
    forward<T>(x, y, axis, options, false);                                                              \
  }                                                                                                      \
  template <>                                                                                            \
  void log_stablemax<T>(InputView<T> x, ArrayView<T> y, int axis, const StablemaxOptions& options) {    \
    forward<T>(x, y, axis, options, true);                                                               \
  }                                                                                                      \
  template <>                                                                                            \
  void stablemax_backward<T>(InputView<T> x, InputView<T> dy, ArrayView<T> dx, int axis,                 \
                             const StablemaxOptions& options) {                                          \
    backward<T>(x, dy, dx, axis, options, false);                                                        \
  }                                                                                                      \
  template <>                                                                                            \
  void log_stablemax_backward<T>(InputView<T> x, InputView<T> dy, ArrayView<T> dx, int axis,             \
                                 const StablemaxOptions& options) {                                      \
    backward<T>(x, dy, dx, axis, options, true);                                                         \
  }
LOGITKIT_SPECIALIZE(float)
LOGITKIT_SPECIALIZE(double)
#undef LOGITKIT_SPECIALIZE

}  // namespace logitkit
