// spherical_z_loss of the C++ API: the Z-loss of de Brebisson & Vincent ("The Z-loss: a shift and
// scale invariant classification loss belonging to the Spherical Family"), fused: one read of the
// row for its mean, one for its variance (from L2 for rows that fit), one for the gradient.
#pragma once
#include <cstdint>
#include <type_traits>

#include "logitkit/export.h"
#include "logitkit/loss.h"
#include "logitkit/view.h"

namespace logitkit {

struct SphericalZLossOptions {
  double a = 0.1;   // sharpness, finite and > 0
  double b = 10.0;  // location of the target's z-score, finite
};

// With z = (x - mean(x)) / std(x) (population std over the class axis), loss_r =
// (1/a) softplus(a (b - z_t)); invariant to shifting and (positively) scaling a row. A row of equal
// logits has no z-scores: its loss and gradient are NaN. Class weights, ignore_index,
// sample_weight and the reductions as cross_entropy (PyTorch's weighted "mean"); with grad.grad
// also d loss / d logits (may be the logits). T = float, double; Index = int32_t, int64_t.
template <class T, class Index>
double spherical_z_loss(InputView<T> /*logits*/, ArrayView<const Index> /*target*/, const LossOptions& /*options*/ = {},
                        const SphericalZLossOptions& /*z*/ = {}, const LossWeights<T>& /*weights*/ = {},
                        ArrayView<T> /*loss*/ = {}, const LossGrad<T>& /*grad*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::spherical_z_loss: T must be float or double");
  static_assert(std::is_same_v<Index, int32_t> || std::is_same_v<Index, int64_t>,
                "logitkit::spherical_z_loss: target indices must be int32_t or int64_t");
  return 0.0;
}
#define LOGITKIT_DECLARE_SPHERICAL_Z(T, Index)                                                               \
  template <>                                                                                                \
  LOGITKIT_API double spherical_z_loss<T, Index>(InputView<T>, ArrayView<const Index>, const LossOptions&,  \
                                                 const SphericalZLossOptions&, const LossWeights<T>&,        \
                                                 ArrayView<T>, const LossGrad<T>&);
LOGITKIT_DECLARE_SPHERICAL_Z(float, int32_t)
LOGITKIT_DECLARE_SPHERICAL_Z(float, int64_t)
LOGITKIT_DECLARE_SPHERICAL_Z(double, int32_t)
LOGITKIT_DECLARE_SPHERICAL_Z(double, int64_t)
#undef LOGITKIT_DECLARE_SPHERICAL_Z

}  // namespace logitkit
