// nll_loss: operands declared to the row driver (runtime/row_driver.h) in two runs. The first
// gathers each row's log-probability of its target (one element per row: no kernel) into the
// per-row loss and weight, summed across rows in a fixed order; the second, only when the
// gradient is asked for, writes the one-hot gradient rows (nll_loss_kernels-inl.h), after every
// input was read, so the gradient may be the log-probabilities' own buffer.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "logitkit/error.h"
#include "logitkit/nll_loss.h"
#include "logitkit/runtime.h"
#include "nll_loss/nll_loss_kernels.h"
#include "runtime/kernel_table.h"
#include "runtime/loss_support.h"
#include "runtime/row_driver.h"

namespace logitkit {
namespace {

// How far ahead the loss pass prefetches its one entry per row: each is a cache (and for long rows
// a TLB) miss, and the loop body alone keeps too few of them in flight (measured: 4096x32000
// float32, 55 -> us).
constexpr ptrdiff_t kPrefetchRows = 16;

// Rows of gradient written per kernel call: the batch's (index, value) pairs live on the stack.
constexpr size_t kGradChunk = 256;

template <class T, class Index>
double nll_loss_impl(ArrayView<const T> log_probs, ArrayView<const Index> target, const LossOptions& options,
                     const LossWeights<T>& weights, ArrayView<T> loss, const LossGrad<T>& grad) {
  check_loss_outputs(options.reduction, loss, grad);
  const bool none = options.reduction == Reduction::kNone;
  const bool class_weighted = given(weights.weight), row_weighted = given(weights.sample_weight);
  const bool with_grad = given(grad.grad);

  RowDriver d(options.axis);
  const int kLp = d.input(log_probs, "log_probs", RowExtent::kRow, 0, RowRead::kStrided);  // one element read per row
  const int kTarget = d.input(target, "target", RowExtent::kScalar);
  const int kRowWeight = row_weighted ? d.input(weights.sample_weight, "sample_weight", RowExtent::kScalar) : -1;
  const int kLoss = none ? d.output(loss, "loss", RowExtent::kScalar) : -1;
  const int kSumLoss = d.row_values(), kSumWeight = d.row_values();
  d.check();
  const int64_t classes = d.n();
  if (class_weighted) check_class_weight(weights.weight, classes);
  if (with_grad) {
    check_view(grad.grad, "grad");
    check_same_shape(grad.grad, log_probs.ndim, log_probs.shape, "grad", "log_probs");
  }
  const T* class_weight = weights.weight.data;
  const ptrdiff_t class_weight_stride = class_weighted ? weights.weight.strides[0] : 0;
  const int64_t ignore = options.ignore_index;
  BadTarget bad;
  // Memory-latency bound: one element of log_probs per row, wherever its target points; tasks
  // sized by that one element, not by the row length.
  RowPolicy per_row_work;
  per_row_work.work_per_row = 16;  // a cache miss per row: about 16 elements of streaming work
  d.run(
      [&](const RowBatch& b) {
        // Pointers and strides in locals: the loop then keeps many rows' loads in flight (each
        // is a cache miss for long rows); through `b` every store would force them reloaded.
        const Index* target_row = b.data<const Index>(kTarget);
        const T* lp_row = b.data<const T>(kLp);
        const T* row_weight = row_weighted ? b.data<const T>(kRowWeight) : nullptr;
        T* loss_row = none ? b.data<T>(kLoss) : nullptr;
        double* sum_loss = b.data<double>(kSumLoss);
        double* sum_weight = b.data<double>(kSumWeight);
        const ptrdiff_t ld_target = b.ld[kTarget], ld_lp = b.ld[kLp], step_lp = b.step[kLp];
        const ptrdiff_t ld_row_weight = row_weighted ? b.ld[kRowWeight] : 0, ld_loss = none ? b.ld[kLoss] : 0;
        const ptrdiff_t ld_sum_loss = b.ld[kSumLoss], ld_sum_weight = b.ld[kSumWeight];
        const ptrdiff_t rows = static_cast<ptrdiff_t>(b.rows);
        for (ptrdiff_t i = 0; i < rows; ++i) {
          if (i + kPrefetchRows < rows) {  // the entry kPrefetchRows rows ahead (a miss per row)
            const int64_t ahead = static_cast<int64_t>(target_row[ptrdiff_t(i + kPrefetchRows) * ld_target]);
            if (ahead >= 0 && ahead < classes)
              __builtin_prefetch(lp_row + ptrdiff_t(i + kPrefetchRows) * ld_lp + ahead * step_lp);
          }
          const int64_t t = static_cast<int64_t>(target_row[ptrdiff_t(i) * ld_target]);
          double w = 0.0, l = 0.0;
          if (t != ignore) {
            if (t < 0 || t >= classes) {
              bad.report(b.first_row + i, t);
            } else {
              w = class_weighted ? static_cast<double>(class_weight[t * class_weight_stride]) : 1.0;
              if (row_weighted) w *= static_cast<double>(row_weight[ptrdiff_t(i) * ld_row_weight]);
              // 0 * -inf = NaN for a zero weight on an impossible class, as PyTorch gives
              l = -(w * static_cast<double>(lp_row[ptrdiff_t(i) * ld_lp + t * step_lp]));
            }
          }
          if (none) loss_row[ptrdiff_t(i) * ld_loss] = static_cast<T>(l);
          sum_loss[ptrdiff_t(i) * ld_sum_loss] = l;
          sum_weight[ptrdiff_t(i) * ld_sum_weight] = w;
        }
      },
      per_row_work);
  bad.throw_if_any(classes, ignore);
  const double total = d.row_value_sum(kSumLoss);
  const double total_weight = options.reduction == Reduction::kMean ? d.row_value_sum(kSumWeight) : 1.0;
  const double result = options.reduction == Reduction::kMean ? total / total_weight : total;
  if (!with_grad) return result;

  // The gradient: -w_r * scale at the target, 0 elsewhere. Memory-bound: a write of the whole
  // gradient (streamed past the last-level cache).
  RowDriver g(options.axis);
  const int kGrad = g.output(grad.grad, "grad");
  const int kGTarget = g.input(target, "target", RowExtent::kScalar);
  const int kGRowWeight = row_weighted ? g.input(weights.sample_weight, "sample_weight", RowExtent::kScalar) : -1;
  const bool per_row_scale = none && given(grad.grad_output_rows);
  const int kGradOutput = per_row_scale ? g.input(grad.grad_output_rows, "grad_output", RowExtent::kScalar) : -1;
  g.check();
  const double scale = options.reduction == Reduction::kMean ? grad.grad_output / total_weight : grad.grad_output;
  const NllLossKernels<T>& k = kernels().nll_loss.get<T>();
  const size_t n = static_cast<size_t>(classes);
  const bool stream = static_cast<size_t>(g.rows() * g.n()) * sizeof(T) >= last_level_cache_bytes();
  g.run([&](const RowBatch& b) {
    int64_t index[kGradChunk];
    T value[kGradChunk];
    for (size_t r0 = 0; r0 < b.rows; r0 += kGradChunk) {
      const size_t count = std::min(kGradChunk, b.rows - r0);
      for (size_t i = 0; i < count; ++i) {
        const size_t r = r0 + i;
        const int64_t t = static_cast<int64_t>(*b.row<const Index>(kGTarget, r));
        index[i] = t == ignore ? -1 : t;  // validated by the first run
        double w = class_weighted && t != ignore ? static_cast<double>(class_weight[t * class_weight_stride]) : 1.0;
        if (row_weighted) w *= static_cast<double>(*b.row<const T>(kGRowWeight, r));
        const double s = per_row_scale ? static_cast<double>(*b.row<const T>(kGradOutput, r)) : scale;
        value[i] = static_cast<T>(w * -s);
      }
      k.one_hot_rows(b.row<T>(kGrad, r0), count, n, b.ld[kGrad], index, value, stream && !b.gathered);
    }
  });
  return result;
}

}  // namespace

#define LOGITKIT_SPECIALIZE(T, Index)                                                                          \
  template <>                                                                                                  \
  double nll_loss<T, Index>(InputView<T> log_probs, ArrayView<const Index> target, const LossOptions& options, \
                            const LossWeights<T>& weights, ArrayView<T> loss, const LossGrad<T>& grad) {       \
    return nll_loss_impl<T, Index>(log_probs, target, options, weights, loss, grad);                           \
  }
LOGITKIT_SPECIALIZE(float, int32_t)
LOGITKIT_SPECIALIZE(float, int64_t)
LOGITKIT_SPECIALIZE(double, int32_t)
LOGITKIT_SPECIALIZE(double, int64_t)
#undef LOGITKIT_SPECIALIZE

}  // namespace logitkit
