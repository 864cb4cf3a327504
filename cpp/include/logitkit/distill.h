// Distillation losses of the C++ API: divergences between the softmax of a student's logits and
// of a teacher's (forward and reverse KL, generalised JSD, total variation), fused: each row's
// logits are read for their max and their exp values (kept in cache), no probability array is
// stored, and the gradient with respect to the student's logits is written in one more pass.
#pragma once
#include <cstdint>
#include <type_traits>

#include "logitkit/export.h"
#include "logitkit/loss.h"
#include "logitkit/view.h"

namespace logitkit {

enum class Divergence : uint8_t {
  kForwardKL,  // KL(q || p) = sum q log(q / p): q the teacher's softmax, p the student's (Hinton's KD)
  kReverseKL,  // KL(p || q)
  kJSD,        // beta KL(q || m) + (1 - beta) KL(p || m), m = beta q + (1 - beta) p; beta 0 and 1:
               // the forward and reverse KL (as Liger-Kernel and TRL's generalised JSD)
  kTVD,        // (1/2) sum |p - q|
};

struct DistillOptions {
  Divergence divergence = Divergence::kForwardKL;
  double temperature = 1.0;           // p = softmax(student / T), q = softmax(teacher / T); finite, > 0
  bool temperature_squared = true;    // multiply the loss by T^2 (Hinton et al.), keeping gradients'
                                      // scale independent of T
  double beta = 0.5;                  // kJSD only, in [0, 1]
};

// Per row r of the logits (class axis options.axis; the teacher the student's shape):
// loss_r = sample_weight[r] (T^2) D(p_r, q_r). Reduced as options.reduction says: kMean divides
// the sum by the summed sample weights (the row count without them; PyTorch's "batchmean"), kSum
// sums, kNone writes the rows to `loss` (the batch shape) and returns their sum. options'
// ignore_index and LossWeights::weight do not apply. With grad.grad, also writes d loss / d student
// (the student's shape; may be the student's logits themselves). T = float or double.
template <class T>
double distill_loss(InputView<T> /*student*/, InputView<T> /*teacher*/, const LossOptions& /*options*/ = {},
                    const DistillOptions& /*distill*/ = {}, ArrayView<const T> /*sample_weight*/ = {},
                    ArrayView<T> /*loss*/ = {}, const LossGrad<T>& /*grad*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::distill_loss: T must be float or double");
  return 0.0;
}

template <>
LOGITKIT_API double distill_loss<float>(InputView<float>, InputView<float>, const LossOptions&, const DistillOptions&,
                                        ArrayView<const float>, ArrayView<float>, const LossGrad<float>&);
template <>
LOGITKIT_API double distill_loss<double>(InputView<double>, InputView<double>, const LossOptions&,
                                         const DistillOptions&, ArrayView<const double>, ArrayView<double>,
                                         const LossGrad<double>&);

// Forward KL distillation from a sparse teacher, given as what a serving engine returns: its top-k
// log-probabilities and their class ids (the student's shape with the class axis's extent k),
// never densified. The teacher's distribution is q = softmax(teacher_logprobs / T) over its k
// classes (its top-k mass renormalised; -inf entries have q = 0), the student's p = softmax(
// student / T) over all C classes, and loss_r = sample_weight[r] (T^2) sum_j q_j log(q_j / p_{id_j}),
// gradient (T^2 / T) (p - q scattered to the ids). Ids must lie in [0, C) and be distinct within
// a row (an Error naming "teacher_ids", thrown before any gradient is written). Reductions as
// distill_loss; distill.divergence must be kForwardKL. T = float or double; Index = int32_t, int64_t.
template <class T, class Index>
double distill_topk_loss(InputView<T> /*student*/, InputView<T> /*teacher_logprobs*/,
                         ArrayView<const Index> /*teacher_ids*/, const LossOptions& /*options*/ = {},
                         const DistillOptions& /*distill*/ = {}, ArrayView<const T> /*sample_weight*/ = {},
                         ArrayView<T> /*loss*/ = {}, const LossGrad<T>& /*grad*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::distill_topk_loss: T must be float or double");
  static_assert(std::is_same_v<Index, int32_t> || std::is_same_v<Index, int64_t>,
                "logitkit::distill_topk_loss: ids must be int32_t or int64_t");
  return 0.0;
}
#define LOGITKIT_DECLARE_TOPK(T, Index)                                                                     \
  template <>                                                                                               \
  LOGITKIT_API double distill_topk_loss<T, Index>(InputView<T>, InputView<T>, ArrayView<const Index>,      \
                                                  const LossOptions&, const DistillOptions&,               \
                                                  ArrayView<const T>, ArrayView<T>, const LossGrad<T>&);
LOGITKIT_DECLARE_TOPK(float, int32_t)
LOGITKIT_DECLARE_TOPK(float, int64_t)
LOGITKIT_DECLARE_TOPK(double, int32_t)
LOGITKIT_DECLARE_TOPK(double, int64_t)
#undef LOGITKIT_DECLARE_TOPK

}  // namespace logitkit
