// cross_entropy of the C++ API: softmax cross-entropy of logits against class indices, fused (the
// logits are read once for the row statistics and once more for the gradient; no probability
// array), with torch.nn.functional.cross_entropy's semantics.
#pragma once
#include <cstdint>
#include <type_traits>

#include "logitkit/export.h"
#include "logitkit/loss.h"
#include "logitkit/view.h"

namespace logitkit {

struct CrossEntropyOptions {
  double label_smoothing = 0.0;  // in [0, 1]: PyTorch's formula, with class weights and ignored rows
  double temperature = 1.0;      // the loss of softmax(logits / temperature); finite and > 0
  // >= 0: adds z log^2 Z per row not ignored (PaLM's and ST-MoE's z-loss; Z the softmax's
  // partition function of logits / temperature), weighted by sample_weight only; "mean" divides
  // it by the sum of those rows' sample weights (their count without them), as Liger-Kernel does.
  double z_loss = 0.0;
};

// With z = logits / temperature along options.axis and w_r as in LossWeights: loss_r =
// (1 - ls) w[t] (lse(z) - z_t) + (ls / C) sum_c w_c (lse(z) - z_c), times sample_weight[r];
// ignored rows 0. Reduced as LossOptions says ("mean": divided by the sum of w[t_r]
// sample_weight[r], as PyTorch; NaN when every row is ignored). Returns the reduced loss (for
// kNone the sum of the row losses, which are written to `loss`, the target's shape). target holds
// class indices in [0, C) or ignore_index (else an Error naming "target"). With grad.grad, also
// writes d loss / d logits (the logits' shape; may be the logits themselves).
// Defined for T = float, double (given explicitly) and Index = int32_t, int64_t.
template <class T, class Index>
double cross_entropy(InputView<T> /*logits*/, ArrayView<const Index> /*target*/, const LossOptions& /*options*/ = {},
                     const CrossEntropyOptions& /*ce*/ = {}, const LossWeights<T>& /*weights*/ = {},
                     ArrayView<T> /*loss*/ = {}, const LossGrad<T>& /*grad*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::cross_entropy: T must be float or double");
  static_assert(std::is_same_v<Index, int32_t> || std::is_same_v<Index, int64_t>,
                "logitkit::cross_entropy: target indices must be int32_t or int64_t");
  return 0.0;
}

#define LOGITKIT_DECLARE_CROSS_ENTROPY(T, Index)                                                              \
  template <>                                                                                                 \
  LOGITKIT_API double cross_entropy<T, Index>(InputView<T>, ArrayView<const Index>, const LossOptions&,      \
                                              const CrossEntropyOptions&, const LossWeights<T>&, ArrayView<T>, \
                                              const LossGrad<T>&);
LOGITKIT_DECLARE_CROSS_ENTROPY(float, int32_t)
LOGITKIT_DECLARE_CROSS_ENTROPY(float, int64_t)
LOGITKIT_DECLARE_CROSS_ENTROPY(double, int32_t)
LOGITKIT_DECLARE_CROSS_ENTROPY(double, int64_t)
#undef LOGITKIT_DECLARE_CROSS_ENTROPY

}  // namespace logitkit
