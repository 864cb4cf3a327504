// nll_loss of the C++ API: the negative log-likelihood of class indices under log-probabilities
// the caller already holds, as torch.nn.functional.nll_loss (with the class axis anywhere).
#pragma once
#include <cstdint>
#include <type_traits>

#include "logitkit/export.h"
#include "logitkit/loss.h"
#include "logitkit/view.h"

namespace logitkit {

// loss_r = -w_r log_probs[r, target[r]] for every row r (the class axis options.axis removed),
// reduced by options.reduction (LossWeights defines w_r and the mean). Returns the reduced loss
// (for kNone: the sum of the row losses, which are written to `loss`, the target's shape).
// target holds class indices in [0, C) or options.ignore_index; any other value throws an Error
// naming "target". With grad.grad, also writes the gradient: -w_r * scale at [r, target[r]] and
// 0 elsewhere (scale: grad_output, divided by the sum of w_r for kMean; per row for kNone).
// Defined for T = float, double (given explicitly: nll_loss<float>(...)) and Index = int32_t,
// int64_t (deduced from target).
template <class T, class Index>
double nll_loss(InputView<T> /*log_probs*/, ArrayView<const Index> /*target*/, const LossOptions& /*options*/ = {},
                const LossWeights<T>& /*weights*/ = {}, ArrayView<T> /*loss*/ = {}, const LossGrad<T>& /*grad*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::nll_loss: T must be float or double");
  static_assert(std::is_same_v<Index, int32_t> || std::is_same_v<Index, int64_t>,
                "logitkit::nll_loss: target indices must be int32_t or int64_t");
  return 0.0;
}

#define LOGITKIT_DECLARE_NLL_LOSS(T, Index)                                                                  \
  template <>                                                                                                \
  LOGITKIT_API double nll_loss<T, Index>(InputView<T>, ArrayView<const Index>, const LossOptions&,          \
                                         const LossWeights<T>&, ArrayView<T>, const LossGrad<T>&);
LOGITKIT_DECLARE_NLL_LOSS(float, int32_t)
LOGITKIT_DECLARE_NLL_LOSS(float, int64_t)
LOGITKIT_DECLARE_NLL_LOSS(double, int32_t)
LOGITKIT_DECLARE_NLL_LOSS(double, int64_t)
#undef LOGITKIT_DECLARE_NLL_LOSS

}  // namespace logitkit
