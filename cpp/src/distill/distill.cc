// distill_loss: operands declared to the row driver (runtime/row_driver.h). Per row: the two
// maxima and exp-value rows from the softmax slot (kept in per-thread scratch, in L2 for rows that
// fit), the divergence's terms from them (distill slot), and with the gradient the projection
// g = k (u - p sum u) streamed to the caller's buffer, which may be the student's logits.
#include <cmath>
#include <cstdint>
#include <string>

#include "logitkit/distill.h"
#include "logitkit/error.h"
#include "logitkit/runtime.h"
#include "distill/distill_kernels.h"
#include "runtime/kernel_table.h"
#include "runtime/loss_support.h"
#include "runtime/row_driver.h"
#include "softmax/softmax_kernels.h"

namespace logitkit {
namespace {

DivergenceKind kind_of(const DistillOptions& o) {
  switch (o.divergence) {
    case Divergence::kForwardKL: return DivergenceKind::kForwardKL;
    case Divergence::kReverseKL: return DivergenceKind::kReverseKL;
    case Divergence::kTVD: return DivergenceKind::kTVD;
    case Divergence::kJSD:
      if (!(o.beta >= 0.0 && o.beta <= 1.0))
        throw Error(Error::Kind::kInvalidArgument, "beta", "must be in [0, 1], got " + shortest_repr(o.beta));
      // the limits as Liger-Kernel and TRL define them (the mixture formula gives 0 there)
      if (o.beta == 0.0) return DivergenceKind::kForwardKL;
      if (o.beta == 1.0) return DivergenceKind::kReverseKL;
      return DivergenceKind::kJSD;
  }
  throw Error(Error::Kind::kInvalidArgument, "divergence",
              "not a Divergence value: " + std::to_string(static_cast<int>(o.divergence)));
}

template <class T>
double distill_impl(ArrayView<const T> student, ArrayView<const T> teacher, const LossOptions& options,
                    const DistillOptions& o, ArrayView<const T> sample_weight, ArrayView<T> loss,
                    const LossGrad<T>& grad) {
  check_loss_outputs(options.reduction, loss, grad);
  const DivergenceKind kind = kind_of(o);
  const bool none = options.reduction == Reduction::kNone, mean = options.reduction == Reduction::kMean;
  const bool row_weighted = given(sample_weight), with_grad = given(grad.grad);
  RowDriver d(options.axis);
  const int kS = d.input(student, "student");
  const int kT = d.input(teacher, "teacher");
  const int kRowWeight = row_weighted ? d.input(sample_weight, "sample_weight", RowExtent::kScalar) : -1;
  const bool per_row_scale = none && given(grad.grad_output_rows);
  const int kGradOutput = per_row_scale ? d.input(grad.grad_output_rows, "grad_output", RowExtent::kScalar) : -1;
  const int kLoss = none ? d.output(loss, "loss", RowExtent::kScalar) : -1;
  const int kGrad = with_grad ? d.output(grad.grad, "grad") : -1;
  const int kSumLoss = d.row_values(), kSumWeight = d.row_values();
  d.check();
  const T c = inverse_temperature<T>(o.temperature);
  const double t_factor = o.temperature_squared ? o.temperature * o.temperature : 1.0;
  double scale = grad.grad_output;
  if (with_grad && mean) {  // the normaliser before any gradient is written
    double total = static_cast<double>(d.rows());
    if (row_weighted) {
      RowDriver w(options.axis);
      w.input(student, "student", RowExtent::kRow, 0, RowRead::kStrided);  // the shape only
      const int kW = w.input(sample_weight, "sample_weight", RowExtent::kScalar);
      const int kSum = w.row_values();
      RowPolicy p;
      p.work_per_row = 1;
      w.run([&](const RowBatch& b) {
        for (size_t r = 0; r < b.rows; ++r) *b.row<double>(kSum, r) = static_cast<double>(*b.row<const T>(kW, r));
      }, p);
      total = w.row_value_sum(kSum);
    }
    scale /= total;
  }
  const SoftmaxKernels<T>& sk = kernels().softmax.get<T>();
  const DistillKernels<T>& k = kernels().distill.get<T>();
  const size_t n = static_cast<size_t>(d.n()), stride = (n + 15) / 16 * 16;
  const bool stream = with_grad && static_cast<size_t>(d.rows() * d.n()) * sizeof(T) >= last_level_cache_bytes() &&
                      n * sizeof(T) >= 4096;
  RowPolicy policy;
  policy.scratch_bytes = (with_grad ? 3 : 2) * stride * sizeof(T) + 64;
  d.run([&](const RowBatch& b) {
    T* es = reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(b.scratch) + 63) / 64 * 64);
    T* et = es + stride;
    T* u = with_grad ? et + stride : nullptr;
    for (size_t r = 0; r < b.rows; ++r) {
      const T* s = b.row<const T>(kS, r);
      const T* t = b.row<const T>(kT, r);
      DivergenceRow<T> row;
      row.c = c;
      row.beta = static_cast<T>(o.beta);
      row.max_s = sk.max(s, n);
      row.max_t = sk.max(t, n);
      const T sum_s = sk.exp_store_sum(s, es, n, row.max_s, c), sum_t = sk.exp_store_sum(t, et, n, row.max_t, c);
      row.inv_sum_s = T(1) / sum_s;
      row.inv_sum_t = T(1) / sum_t;
      row.log_sum_s = static_cast<T>(std::log(static_cast<double>(sum_s)));
      row.log_sum_t = static_cast<T>(std::log(static_cast<double>(sum_t)));
      const DivergenceSums sums = k.terms(kind, es, et, s, t, u, n, row);
      const double sw = row_weighted ? static_cast<double>(*b.row<const T>(kRowWeight, r)) : 1.0;
      const double row_loss = sw * t_factor * sums.loss;
      if (with_grad) {
        const double go = per_row_scale ? static_cast<double>(*b.row<const T>(kGradOutput, r)) : scale;
        k.project(u, es, b.row<T>(kGrad, r), n, static_cast<T>(go * sw * t_factor * static_cast<double>(c)),
                  static_cast<T>(static_cast<double>(row.inv_sum_s) * sums.u), stream && !b.gathered);
      }
      if (none) *b.row<T>(kLoss, r) = static_cast<T>(row_loss);
      *b.row<double>(kSumLoss, r) = row_loss;
      *b.row<double>(kSumWeight, r) = sw;
    }
  }, policy);
  const double total = d.row_value_sum(kSumLoss);
  return mean ? total / d.row_value_sum(kSumWeight) : total;
}

}  // namespace

template <>
double distill_loss<float>(InputView<float> student, InputView<float> teacher, const LossOptions& options,
                           const DistillOptions& distill, ArrayView<const float> sample_weight, ArrayView<float> loss,
                           const LossGrad<float>& grad) {
  return distill_impl<float>(student, teacher, options, distill, sample_weight, loss, grad);
}
template <>
double distill_loss<double>(InputView<double> student, InputView<double> teacher, const LossOptions& options,
                            const DistillOptions& distill, ArrayView<const double> sample_weight,
                            ArrayView<double> loss, const LossGrad<double>& grad) {
  return distill_impl<double>(student, teacher, options, distill, sample_weight, loss, grad);
}

}  // namespace logitkit
