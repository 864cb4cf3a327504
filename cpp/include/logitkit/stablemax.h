// stablemax ops of the C++ API: StableMax and log-StableMax ("Grokking at the Edge of Numerical
// Stability", Prieto et al. 2025) over one axis of an N-D view, and their vector-Jacobian products.
#pragma once
#include <cstdint>
#include <type_traits>
#include "logitkit/export.h"
#include "logitkit/loss.h"
#include "logitkit/view.h"

namespace logitkit {

struct StablemaxOptions {
  double temperature = 1.0;  // the op is applied to x * (1 / temperature); finite and > 0
};

// y = s(x') / sum(s(x')) along `axis`, x' = x / temperature, s(t) = 1 + t (t >= 0), 1/(1 - t) (t < 0).
// No max subtraction is needed. Special values (per row):
//  - a NaN makes the row NaN;
//  - -inf entries get 0 (s = 0); a row of only -inf entries is NaN (0/0), as softmax;
//  - +inf entries get NaN and the row's finite entries 0 (s/S with S = +inf);
//  - finite rows never overflow: the sum is rescaled by a power of two when it leaves
//    [2^-64, 2^64) (float) / [2^-512, 2^512) (double), so only outputs that are themselves
//    subnormal can lose precision. A row whose x' overflows (temperature < 1, |x| near the largest
//    float) is evaluated with explicit exponents in double: the limit, never NaN (all four ops).
// x and y have the same shape, any strides; y may alias x exactly (in place).
// Throws logitkit::Error naming the bad argument.
// Like every op, a template defined for T = float and double only (see softmax.h).
template <class T>
void stablemax(InputView<T> /*x*/, ArrayView<T> /*y*/, int /*axis*/, const StablemaxOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::stablemax: T must be float or double");
}
template <> LOGITKIT_API void stablemax<float>(InputView<float>, ArrayView<float>, int, const StablemaxOptions&);
template <> LOGITKIT_API void stablemax<double>(InputView<double>, ArrayView<double>, int, const StablemaxOptions&);

// y = log(stablemax(x)), within 3 ulp at any magnitude (measured against mpmath): log(p) where p
// is normal, -log1p(rest / s_top) for the largest entries (p -> 1), and sign(x') log1p(|x'|) -
// log(sum s(x')) below the normal range, where the two terms cannot cancel. -inf entries give -inf.
template <class T>
void log_stablemax(InputView<T> /*x*/, ArrayView<T> /*y*/, int /*axis*/, const StablemaxOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::log_stablemax: T must be float or double");
}
template <> LOGITKIT_API void log_stablemax<float>(InputView<float>, ArrayView<float>, int, const StablemaxOptions&);
template <> LOGITKIT_API void log_stablemax<double>(InputView<double>, ArrayView<double>, int, const StablemaxOptions&);

// Vector-Jacobian products with respect to x (StableMax's Jacobian depends on x, not only on y):
//  stablemax_backward:     dx_i = c s'(x'_i)/S (dy_i - sum_j p_j dy_j)
//  log_stablemax_backward: dx_i = c (s'(x'_i)/s(x'_i) dy_i - s'(x'_i)/S sum_j dy_j)
// with c = 1/temperature, p = stablemax(x), s'(t) = 1 (t >= 0), 1/(1 - t)^2 (t < 0).
// x, dy and dx share one shape, any strides; dx may alias dy or x exactly.
template <class T>
void stablemax_backward(InputView<T> /*x*/, InputView<T> /*dy*/, ArrayView<T> /*dx*/, int /*axis*/,
                        const StablemaxOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::stablemax_backward: T must be float or double");
}
template <> LOGITKIT_API void stablemax_backward<float>(InputView<float>, InputView<float>, ArrayView<float>, int,
                                                       const StablemaxOptions&);
template <> LOGITKIT_API void stablemax_backward<double>(InputView<double>, InputView<double>, ArrayView<double>, int,
                                                        const StablemaxOptions&);
template <class T>
void log_stablemax_backward(InputView<T> /*x*/, InputView<T> /*dy*/, ArrayView<T> /*dx*/, int /*axis*/,
                            const StablemaxOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::log_stablemax_backward: T must be float or double");
}
template <> LOGITKIT_API void log_stablemax_backward<float>(InputView<float>, InputView<float>, ArrayView<float>, int,
                                                           const StablemaxOptions&);
template <> LOGITKIT_API void log_stablemax_backward<double>(InputView<double>, InputView<double>, ArrayView<double>,
                                                             int, const StablemaxOptions&);

// stablemax_cross_entropy: the negative log-likelihood of log-StableMax (the grokking paper's
// StableMax cross-entropy), loss_r = -log(s(x'_t) / sum_c s(x'_c)) with class weights, ignore_index,
// sample_weight and the reductions of LossOptions as cross_entropy (PyTorch's weighted "mean").
// Fused: one pass for the row sums, one for the gradient (d loss / d logits, may be the logits).
// Defined for T = float, double and Index = int32_t, int64_t.
template <class T, class Index>
double stablemax_cross_entropy(InputView<T> /*logits*/, ArrayView<const Index> /*target*/,
                               const LossOptions& /*options*/ = {}, const StablemaxOptions& /*stablemax*/ = {},
                               const LossWeights<T>& /*weights*/ = {}, ArrayView<T> /*loss*/ = {},
                               const LossGrad<T>& /*grad*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::stablemax_cross_entropy: T must be float or double");
  static_assert(std::is_same_v<Index, int32_t> || std::is_same_v<Index, int64_t>,
                "logitkit::stablemax_cross_entropy: target indices must be int32_t or int64_t");
  return 0.0;
}
#define LOGITKIT_DECLARE_STABLEMAX_CE(T, Index)                                                              \
  template <>                                                                                                \
  LOGITKIT_API double stablemax_cross_entropy<T, Index>(InputView<T>, ArrayView<const Index>, const LossOptions&, \
                                                        const StablemaxOptions&, const LossWeights<T>&,       \
                                                        ArrayView<T>, const LossGrad<T>&);
LOGITKIT_DECLARE_STABLEMAX_CE(float, int32_t)
LOGITKIT_DECLARE_STABLEMAX_CE(float, int64_t)
LOGITKIT_DECLARE_STABLEMAX_CE(double, int32_t)
LOGITKIT_DECLARE_STABLEMAX_CE(double, int64_t)
#undef LOGITKIT_DECLARE_STABLEMAX_CE

}  // namespace logitkit
