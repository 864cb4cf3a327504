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

// Distillation losses that also take the class labels, per row with p = softmax(student / T),
// q = softmax(teacher / T), t the target and p^, q^ the distributions over the other classes
// (renormalised without t):
//  - kDecoupled (dkd_loss; Zhao et al., "Decoupled Knowledge Distillation"): T^2 (alpha TCKD +
//    beta NCKD), TCKD = KL([q_t, 1 - q_t] || [p_t, 1 - p_t]), NCKD = KL(q^ || p^);
//  - kNormalized (nkd_loss; Yang et al., "From Knowledge Distillation to Self-Knowledge
//    Distillation"): -q1_t log p1_t - gamma T^2 sum_{c != t} q^_c log p^_c, with p1, q1 the
//    softmax at temperature 1 (the authors' NKDLoss).
// The non-target sums leave the target out (not subtracted: no cancellation when p_t is near 1).
// ignore_index, sample_weight and the reductions as cross_entropy ("mean": over the rows not
// ignored, weighted by sample_weight); the gradient is with respect to the student.
enum class TargetDistill : uint8_t { kDecoupled, kNormalized };
struct TargetDistillOptions {
  TargetDistill kind = TargetDistill::kDecoupled;
  double temperature = 4.0;  // DKD's default (NKD's is 1)
  double alpha = 1.0;        // DKD: the TCKD weight
  double beta = 8.0;         // DKD: the NCKD weight
  double gamma = 1.5;        // NKD: the non-target weight
};
template <class T, class Index>
double distill_target_loss(InputView<T> /*student*/, InputView<T> /*teacher*/, ArrayView<const Index> /*target*/,
                           const LossOptions& /*options*/ = {}, const TargetDistillOptions& /*distill*/ = {},
                           ArrayView<const T> /*sample_weight*/ = {}, ArrayView<T> /*loss*/ = {},
                           const LossGrad<T>& /*grad*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::distill_target_loss: T must be float or double");
  static_assert(std::is_same_v<Index, int32_t> || std::is_same_v<Index, int64_t>,
                "logitkit::distill_target_loss: target indices must be int32_t or int64_t");
  return 0.0;
}
#define LOGITKIT_DECLARE_TARGET_DISTILL(T, Index)                                                           \
  template <>                                                                                               \
  LOGITKIT_API double distill_target_loss<T, Index>(InputView<T>, InputView<T>, ArrayView<const Index>,    \
                                                    const LossOptions&, const TargetDistillOptions&,       \
                                                    ArrayView<const T>, ArrayView<T>, const LossGrad<T>&);
LOGITKIT_DECLARE_TARGET_DISTILL(float, int32_t)
LOGITKIT_DECLARE_TARGET_DISTILL(float, int64_t)
LOGITKIT_DECLARE_TARGET_DISTILL(double, int32_t)
LOGITKIT_DECLARE_TARGET_DISTILL(double, int64_t)
#undef LOGITKIT_DECLARE_TARGET_DISTILL

}  // namespace logitkit
