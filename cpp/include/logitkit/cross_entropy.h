// cross_entropy of the C++ API: softmax cross-entropy of logits against class indices or class
// probabilities, fused (the
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
  // > 0: the logits become softcap * tanh(logits / softcap) first (Gemma 2's logit soft-capping,
  // inside the kernel; the gradient includes the tanh derivative); 0: off. Finite and >= 0.
  double softcap = 0.0;
  // Subtracted from the target's logit before the temperature (class-index targets): the additive
  // margin of AM-softmax / CosFace, and of ldr_kl_loss. Finite; not combined with softcap.
  double target_margin = 0.0;
  // The loss as a function h of l = log p_t (class-index targets; not with label smoothing):
  // cross-entropy h = -l, or one of the seed papers' losses, each with its parameter `form_param`.
  enum class Form : uint8_t {
    kCrossEntropy,
    kFocal,    // -(1 - p_t)^gamma log p_t (Lin et al., softmax focal loss); form_param = gamma >= 0
    kPoly1,    // -log p_t + epsilon (1 - p_t) (Leng et al., PolyLoss); form_param = epsilon
    kCompSum,  // (p_t^(tau - 1) - 1) / (1 - tau), -log p_t at tau = 1 (Mao, Mohri & Zhong's comp-sum
               // losses: tau 0 sum-exponential, 1 cross-entropy, 1 + q generalised CE, 2 MAE);
               // form_param = tau >= 0
  };
  Form form = Form::kCrossEntropy;
  double form_param = 0.0;
};

// Extra outputs from the same pass, each computed only when given (nullptr / absent view: not).
template <class T>
struct CrossEntropyExtras {
  ArrayView<T> lse;              // per row (target's batch shape): log Z, Z the partition function of
                                 // the (capped) logits / temperature; 0 for ignored rows
  ArrayView<int64_t> predicted;  // per row: argmax of the logits, ties to the lowest index (NaN first)
  double* z_loss = nullptr;      // the z-loss term alone, reduced as the loss reduces it
  double* accuracy = nullptr;    // class-index targets: the fraction of rows not ignored whose
                                 // argmax is the target (NaN when every row is ignored)
};

// With z = logits / temperature along options.axis and w_r as in LossWeights: loss_r =
// (1 - ls) w[t] (lse(z) - z_t) + (ls / C) sum_c w_c (lse(z) - z_c), times sample_weight[r];
// ignored rows 0. Reduced as LossOptions says ("mean": divided by the sum of w[t_r]
// sample_weight[r], as PyTorch; NaN when every row is ignored). Returns the reduced loss (for
// kNone the sum of the row losses, which are written to `loss`, the target's shape). target holds
// class indices in [0, C) or ignore_index (else an Error naming "target"). With grad.grad, also
// writes d loss / d logits (the logits' shape; may be the logits themselves).
//
// Soft targets (Index = T): target holds class probabilities y of the logits' shape, and loss_r =
// -sum_c w_c y'_c log p_c with y' = (1 - ls) y + ls / C (PyTorch's formula), a zero probability
// adding 0 also against a -inf logit (PyTorch gives NaN there); times sample_weight[r]. Nothing is
// ignored, and "mean" divides by the sum of the sample weights (the row count without them), as
// PyTorch divides by the batch size. A row whose targets are not finite is an Error naming "target".
// Defined for T = float, double (given explicitly) and Index = int32_t, int64_t or T.
template <class T, class Index>
double cross_entropy(InputView<T> /*logits*/, ArrayView<const Index> /*target*/, const LossOptions& /*options*/ = {},
                     const CrossEntropyOptions& /*ce*/ = {}, const LossWeights<T>& /*weights*/ = {},
                     ArrayView<T> /*loss*/ = {}, const LossGrad<T>& /*grad*/ = {},
                     const CrossEntropyExtras<T>& /*extras*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::cross_entropy: T must be float or double");
  static_assert(std::is_same_v<Index, int32_t> || std::is_same_v<Index, int64_t> || std::is_same_v<Index, T>,
                "logitkit::cross_entropy: targets must be int32_t or int64_t class indices, or T probabilities");
  return 0.0;
}

#define LOGITKIT_DECLARE_CROSS_ENTROPY(T, Index)                                                              \
  template <>                                                                                                 \
  LOGITKIT_API double cross_entropy<T, Index>(InputView<T>, ArrayView<const Index>, const LossOptions&,      \
                                              const CrossEntropyOptions&, const LossWeights<T>&, ArrayView<T>, \
                                              const LossGrad<T>&, const CrossEntropyExtras<T>&);
LOGITKIT_DECLARE_CROSS_ENTROPY(float, int32_t)
LOGITKIT_DECLARE_CROSS_ENTROPY(float, int64_t)
LOGITKIT_DECLARE_CROSS_ENTROPY(float, float)
LOGITKIT_DECLARE_CROSS_ENTROPY(double, int32_t)
LOGITKIT_DECLARE_CROSS_ENTROPY(double, int64_t)
LOGITKIT_DECLARE_CROSS_ENTROPY(double, double)
#undef LOGITKIT_DECLARE_CROSS_ENTROPY

}  // namespace logitkit
