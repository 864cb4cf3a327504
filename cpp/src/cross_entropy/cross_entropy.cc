// cross_entropy: operands declared to the row driver (runtime/row_driver.h). Each row's max and
// exp-sum come from the softmax slot (a max pass, then the exp pass from L2 for rows that fit),
// its loss from them and the target logit (plus one more read for label smoothing); with the
// gradient, the exp pass stores its values and one more pass over them (from cache) writes the
// gradient, so the logits may be the gradient's own buffer. "mean" needs the total weight before any gradient is scaled: a first run over the
// targets alone sums it (one element per row).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "logitkit/cross_entropy.h"
#include "logitkit/error.h"
#include "logitkit/runtime.h"
#include "cross_entropy/cross_entropy_kernels.h"
#include "runtime/kernel_table.h"
#include "runtime/loss_support.h"
#include "runtime/row_driver.h"
#include "softmax/softmax_kernels.h"

namespace logitkit {
namespace {

void check_label_smoothing(double ls) {
  if (!(ls >= 0.0 && ls <= 1.0))
    throw Error(Error::Kind::kInvalidArgument, "label_smoothing", "must be in [0, 1], got " + shortest_repr(ls));
}

// The "mean" normalisers: the sum over the rows not ignored of w[t_r] * sample_weight[r] (the
// loss's) and of sample_weight[r] (the z-loss's). Throws naming "target" for a class index out of
// range, before any gradient is written.
struct Normalisers {
  double weight, rows;
};
template <class T, class Index>
Normalisers normalisers(ArrayView<const T> logits, ArrayView<const Index> target, int axis,
                        const LossWeights<T>& weights, int64_t ignore) {
  RowDriver d(axis);
  d.input(logits, "logits", RowExtent::kRow, 0, RowRead::kStrided);  // the shape only: never read
  const int kTarget = d.input(target, "target", RowExtent::kScalar);
  const bool row_weighted = given(weights.sample_weight);
  const int kRowWeight = row_weighted ? d.input(weights.sample_weight, "sample_weight", RowExtent::kScalar) : -1;
  const int kW = d.row_values(), kRows = d.row_values();
  const int64_t classes = d.n();
  const T* class_weight = weights.weight.data;
  const ptrdiff_t class_stride = given(weights.weight) ? weights.weight.strides[0] : 0;
  RowPolicy policy;
  policy.work_per_row = 1;
  BadTarget bad;
  d.run(
      [&](const RowBatch& b) {
        for (size_t r = 0; r < b.rows; ++r) {
          const int64_t t = static_cast<int64_t>(*b.row<const Index>(kTarget, r));
          double w = 0.0, sw = 0.0;
          if (t != ignore && (t < 0 || t >= classes)) {
            bad.report(b.first_row + static_cast<int64_t>(r), t);
          } else if (t != ignore) {
            sw = row_weighted ? static_cast<double>(*b.row<const T>(kRowWeight, r)) : 1.0;
            w = (class_weight ? static_cast<double>(class_weight[t * class_stride]) : 1.0) * sw;
          }
          *b.row<double>(kW, r) = w;
          *b.row<double>(kRows, r) = sw;
        }
      },
      policy);
  bad.throw_if_any(classes, ignore);
  return {d.row_value_sum(kW), d.row_value_sum(kRows)};
}

template <class T, class Index>
double cross_entropy_impl(ArrayView<const T> logits, ArrayView<const Index> target, const LossOptions& options,
                          const CrossEntropyOptions& ce, const LossWeights<T>& weights, ArrayView<T> loss,
                          const LossGrad<T>& grad) {
  check_loss_outputs(options.reduction, loss, grad);
  check_label_smoothing(ce.label_smoothing);
  if (!(ce.z_loss >= 0.0) || !std::isfinite(ce.z_loss))
    throw Error(Error::Kind::kInvalidArgument, "z_loss", "must be a finite number >= 0, got " + shortest_repr(ce.z_loss));
  const bool none = options.reduction == Reduction::kNone, mean = options.reduction == Reduction::kMean;
  const bool class_weighted = given(weights.weight), row_weighted = given(weights.sample_weight);
  const bool with_grad = given(grad.grad);

  RowDriver d(options.axis);
  const int kX = d.input(logits, "logits");
  const int kTarget = d.input(target, "target", RowExtent::kScalar);
  const int kRowWeight = row_weighted ? d.input(weights.sample_weight, "sample_weight", RowExtent::kScalar) : -1;
  const bool per_row_scale = none && given(grad.grad_output_rows);
  const int kGradOutput = per_row_scale ? d.input(grad.grad_output_rows, "grad_output", RowExtent::kScalar) : -1;
  const int kLoss = none ? d.output(loss, "loss", RowExtent::kScalar) : -1;
  const int kGrad = with_grad ? d.output(grad.grad, "grad") : -1;
  const int kSumLoss = d.row_values(), kSumWeight = d.row_values();
  const bool with_z = ce.z_loss > 0.0;
  const int kSumZ = with_z ? d.row_values() : -1, kSumRows = with_z ? d.row_values() : -1;
  d.check();
  const int64_t classes = d.n();
  const T c = inverse_temperature<T>(ce.temperature);
  if (class_weighted) check_class_weight(weights.weight, classes);
  // The class weights as a contiguous row (the kernels read them beside each row): the caller's
  // own when contiguous, else a copy.
  std::vector<T> class_weight_copy;
  const T* w = nullptr;
  double weight_total = static_cast<double>(classes);  // sum of the class weights
  if (class_weighted) {
    const ptrdiff_t stride = weights.weight.strides[0];
    if (stride != 1 && classes > 1) {
      class_weight_copy.resize(static_cast<size_t>(classes));
      for (int64_t k = 0; k < classes; ++k) class_weight_copy[size_t(k)] = weights.weight.data[k * stride];
      w = class_weight_copy.data();
    } else {
      w = weights.weight.data;
    }
    weight_total = 0.0;
    for (int64_t k = 0; k < classes; ++k) weight_total += static_cast<double>(w[k]);
  }
  const double ls = ce.label_smoothing, ls_per_class = classes ? ls / double(classes) : 0.0;
  const int64_t ignore = options.ignore_index;
  // d loss / d (sum of the row losses), and of the row z-losses (their own normaliser for "mean")
  double scale = grad.grad_output, z_scale = grad.grad_output;
  if (with_grad) {  // the targets checked before any gradient is written
    const Normalisers norm = normalisers<T, Index>(logits, target, options.axis, weights, ignore);
    if (mean) {
      scale /= norm.weight;
      z_scale /= norm.rows;
    }
  }

  const SoftmaxKernels<T>& sk = kernels().softmax.get<T>();
  const CrossEntropyKernels<T>& k = kernels().cross_entropy.get<T>();
  const size_t n = static_cast<size_t>(classes);
  // Streaming stores for a gradient far beyond the last-level cache, in rows long enough that the
  // partial lines at their ends are rare.
  const bool stream = with_grad && static_cast<size_t>(d.rows() * d.n()) * sizeof(T) >= last_level_cache_bytes() &&
                      n * sizeof(T) >= 4096;
  BadTarget bad;
  RowPolicy policy;
  if (stream) policy.scratch_bytes = n * sizeof(T);  // the row's exp values, kept in L2
  d.run([&](const RowBatch& b) {
    for (size_t r = 0; r < b.rows; ++r) {
      const T* x = b.row<const T>(kX, r);
      const int64_t t = static_cast<int64_t>(*b.row<const Index>(kTarget, r));
      T* g = with_grad ? b.row<T>(kGrad, r) : nullptr;
      double row_loss = 0.0, row_weight = 0.0, row_z = 0.0, row_count = 0.0;
      const bool valid = t != ignore && t >= 0 && t < classes;
      if (t != ignore && !valid) bad.report(b.first_row + static_cast<int64_t>(r), t);
      if (valid) {
        // The max, then the exp-sum from a second read (from L2 while a row fits there): measured
        // 3x faster than the one-read online max-and-sum, whose rescaling is on the hot path. The
        // exp values are kept for the gradient (in the gradient itself, or in L2 scratch when it is
        // streamed), after every other read of the row: the gradient may be the logits.
        MaxSum<T> ms;
        ms.max = sk.max(x, n);
        T* exps = g ? (stream && !b.gathered ? static_cast<T*>(b.scratch) : g) : nullptr;
        const double m = static_cast<double>(ms.max);
        // c (x_t - max) as the kernels round it, and the label-smoothing sum, before any write
        const double z_t = scaled_difference_scalar(static_cast<double>(x[t]), m, static_cast<double>(c));
        const double shifted = ls > 0.0 ? k.shifted_dot(x, w, n, ms.max) : 0.0;
        ms.sum = exps ? sk.exp_store_sum(x, exps, n, ms.max, c) : sk.exp_sum(x, n, ms.max, c);
        const double lse = std::log(static_cast<double>(ms.sum));  // log sum exp(c (x - max))
        const double w_t = class_weighted ? static_cast<double>(w[t]) : 1.0;
        const double sw = row_weighted ? static_cast<double>(*b.row<const T>(kRowWeight, r)) : 1.0;
        double loss_row = w_t * (lse - z_t);  // -log p_t
        if (ls > 0.0) {  // -sum_c w_c log p_c = lse sum w - c sum w (x - max)
          const double smooth = lse * weight_total - static_cast<double>(c) * shifted;
          loss_row = (1.0 - ls) * loss_row + ls_per_class * smooth;
        }
        row_loss = sw * loss_row;
        row_weight = sw * w_t;
        // z-loss (PaLM, ST-MoE): z log^2 Z of the full log-partition c max + lse, per row weighted
        // by sample_weight alone; "mean" divides it by the rows' sample weights (their count).
        const double log_z = static_cast<double>(c) * m + lse;
        if (with_z) {
          row_z = sw * ce.z_loss * log_z * log_z;
          row_count = sw;
        }
        if (g) {
          // g_c = s c (A p_c - (1 - ls) w_t [c == t] - (ls / C) w_c), A = (1 - ls) w_t + (ls / C) sum w,
          // plus the z-loss's s_z c 2 z log Z p_c
          const double go = per_row_scale ? static_cast<double>(*b.row<const T>(kGradOutput, r)) : 1.0;
          const double s = (per_row_scale ? go : scale) * sw * static_cast<double>(c);
          double a = s * ((1.0 - ls) * w_t + ls_per_class * weight_total);
          if (with_z) a += (per_row_scale ? go : z_scale) * sw * static_cast<double>(c) * 2.0 * ce.z_loss * log_z;
          k.grad_from_exp(exps, w, g, n, static_cast<T>(a / static_cast<double>(ms.sum)),
                     static_cast<T>(s * ls_per_class), static_cast<size_t>(t), static_cast<T>(s * (1.0 - ls) * w_t),
                     stream && !b.gathered);
        }
      } else if (g) {
        std::fill(g, g + n, T(0));
      }
      if (none) *b.row<T>(kLoss, r) = static_cast<T>(row_loss + row_z);
      *b.row<double>(kSumLoss, r) = row_loss;
      *b.row<double>(kSumWeight, r) = row_weight;
      if (with_z) {
        *b.row<double>(kSumZ, r) = row_z;
        *b.row<double>(kSumRows, r) = row_count;
      }
    }
  }, policy);
  bad.throw_if_any(classes, ignore);
  const double total = d.row_value_sum(kSumLoss), z_total = with_z ? d.row_value_sum(kSumZ) : 0.0;
  if (!mean) return total + z_total;
  return total / d.row_value_sum(kSumWeight) + (with_z ? z_total / d.row_value_sum(kSumRows) : 0.0);
}

}  // namespace

#define LOGITKIT_SPECIALIZE(T, Index)                                                                          \
  template <>                                                                                                  \
  double cross_entropy<T, Index>(InputView<T> logits, ArrayView<const Index> target, const LossOptions& options, \
                                 const CrossEntropyOptions& ce, const LossWeights<T>& weights, ArrayView<T> loss,  \
                                 const LossGrad<T>& grad) {                                                    \
    return cross_entropy_impl<T, Index>(logits, target, options, ce, weights, loss, grad);                     \
  }
LOGITKIT_SPECIALIZE(float, int32_t)
LOGITKIT_SPECIALIZE(float, int64_t)
LOGITKIT_SPECIALIZE(double, int32_t)
LOGITKIT_SPECIALIZE(double, int64_t)
#undef LOGITKIT_SPECIALIZE

}  // namespace logitkit
