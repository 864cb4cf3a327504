// Argument checks and helpers shared by the loss drivers (nll_loss.cc, cross_entropy.cc), and
// class_index_loss: the whole driver of a loss on class indices given its row function.
#pragma once
#include <algorithm>
#include <cstdint>
#include <mutex>
#include <limits>
#include <string>

#include "logitkit/error.h"
#include "logitkit/loss.h"
#include "logitkit/view.h"
#include "runtime/row_driver.h"
#include "runtime/rows.h"

namespace logitkit {

// An optional view is absent when default-constructed (an empty array still has ndim >= 1).
template <class U>
inline bool given(const ArrayView<U>& v) {
  return v.data != nullptr || v.ndim != 0;
}

// The reduction, and the outputs it asks for: a per-row loss view for kNone, per-row upstream
// gradients only with kNone.
template <class T>
void check_loss_outputs(Reduction r, const ArrayView<T>& loss, const LossGrad<T>& grad) {
  if (r != Reduction::kNone && r != Reduction::kSum && r != Reduction::kMean)
    throw Error(Error::Kind::kInvalidArgument, "reduction",
                "not a Reduction value: " + std::to_string(static_cast<int>(r)));
  const bool none = r == Reduction::kNone;
  if (none && !given(loss))
    throw Error(Error::Kind::kInvalidArgument, "loss", "reduction none writes one loss per row: a view is required");
  if (!none && given(grad.grad_output_rows))
    throw Error(Error::Kind::kInvalidArgument, "grad_output",
                "per-row upstream gradients go with reduction none; a reduced loss takes a scalar");
}

template <class T>
void check_class_weight(const ArrayView<const T>& weight, int64_t classes) {
  check_view(weight, "weight");
  if (weight.ndim != 1 || weight.shape[0] != classes)
    throw Error(Error::Kind::kInvalidArgument, "weight",
                "must have shape (" + std::to_string(classes) + ",), one weight per class");
}

// The lowest row whose target is neither a class nor ignore_index, reported by any thread (the
// error path only: a lock is fine there).
class BadTarget {
 public:
  void report(int64_t row, int64_t value) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (row < row_) {
      row_ = row;
      value_ = value;
    }
  }
  void throw_if_any(int64_t classes, int64_t ignore_index) const {
    if (row_ == kNone) return;
    throw Error(Error::Kind::kInvalidArgument, "target",
                "class index " + std::to_string(value_) + " (row " + std::to_string(row_) + ") is out of range [0, " +
                    std::to_string(classes) + ") and is not ignore_index (" + std::to_string(ignore_index) + ")");
  }

 private:
  static constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  std::mutex mutex_;
  int64_t row_ = kNone, value_ = 0;
};

// The lowest row whose soft targets are not finite (or whose weighted sum overflows).
class BadSoftTarget {
 public:
  void report(int64_t row) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (row < row_) row_ = row;
  }
  void throw_if_any() const {
    if (row_ == kNone) return;
    throw Error(Error::Kind::kInvalidArgument, "target",
                "probabilities must be finite (row " + std::to_string(row_) + " is not, or its weighted sum overflows)");
  }

 private:
  static constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  std::mutex mutex_;
  int64_t row_ = kNone;
};

// A loss on logits against class indices, given per row by
//   double row(const T* x, const T* x2, size_t t, T* g, double k, const RowBatch& b)
// which returns the row's loss l_r for class t and, when g is not null, writes k d l_r / d x to g
// (g may be x: read the row before writing). x2: the row of `second` (a second input of x's
// shape, e.g. a teacher's logits), null when absent. k already holds weight[t] * sample_weight[r] and the
// upstream gradient over "mean"'s normaliser. Everything else is here: the operands, targets
// (ignore_index: loss 0, gradient 0; out of range: an Error naming "target", thrown before any
// gradient is written when there is one), class and per-row weights, the reductions with
// PyTorch's weighted mean, per-row upstream gradients, and the thread-independent row sums.
template <class T, class Index, class Row>
double class_index_loss(ArrayView<const T> input, const char* input_name, ArrayView<const Index> target,
                        const LossOptions& options, const LossWeights<T>& weights, ArrayView<T> loss,
                        const LossGrad<T>& grad, RowPolicy policy, Row&& row, ArrayView<const T> second = {},
                        const char* second_name = nullptr) {
  check_loss_outputs(options.reduction, loss, grad);
  const bool none = options.reduction == Reduction::kNone, mean = options.reduction == Reduction::kMean;
  const bool row_weighted = given(weights.sample_weight), with_grad = given(grad.grad);
  const int64_t ignore = options.ignore_index;
  auto declare = [&](RowDriver& d, bool all) {
    d.input(input, input_name, RowExtent::kRow, 0, all ? RowRead::kGather : RowRead::kStrided);
    d.input(target, "target", RowExtent::kScalar);
    if (row_weighted) d.input(weights.sample_weight, "sample_weight", RowExtent::kScalar);
  };
  RowDriver d(options.axis);
  declare(d, true);
  const int kX = 0, kTarget = 1, kRowWeight = row_weighted ? 2 : -1;
  const int kSecond = given(second) ? d.input(second, second_name) : -1;
  const bool per_row_scale = none && given(grad.grad_output_rows);
  const int kGradOutput = per_row_scale ? d.input(grad.grad_output_rows, "grad_output", RowExtent::kScalar) : -1;
  const int kLoss = none ? d.output(loss, "loss", RowExtent::kScalar) : -1;
  const int kGrad = with_grad ? d.output(grad.grad, "grad") : -1;
  const int kSumLoss = d.row_values(), kSumWeight = d.row_values();
  d.check();
  const int64_t classes = d.n();
  if (given(weights.weight)) check_class_weight(weights.weight, classes);
  const T* w = weights.weight.data;
  const ptrdiff_t w_stride = given(weights.weight) ? weights.weight.strides[0] : 0;
  auto row_weight = [&](const RowBatch& b, size_t r, int64_t t) {
    const double sw = row_weighted ? static_cast<double>(*b.row<const T>(kRowWeight, r)) : 1.0;
    return (w ? static_cast<double>(w[t * w_stride]) : 1.0) * sw;
  };
  double scale = grad.grad_output;
  if (with_grad) {  // the targets checked, and "mean"'s normaliser summed, before any gradient is written
    RowDriver pre(options.axis);
    declare(pre, false);
    const int kW = pre.row_values();
    RowPolicy p;
    p.work_per_row = 1;
    BadTarget bad;
    pre.run([&](const RowBatch& b) {
      for (size_t r = 0; r < b.rows; ++r) {
        const int64_t t = static_cast<int64_t>(*b.row<const Index>(kTarget, r));
        const bool valid = t != ignore && t >= 0 && t < classes;
        if (t != ignore && !valid) bad.report(b.first_row + static_cast<int64_t>(r), t);
        *b.row<double>(kW, r) = valid ? row_weight(b, r, t) : 0.0;
      }
    }, p);
    bad.throw_if_any(classes, ignore);
    if (mean) scale /= pre.row_value_sum(kW);
  }
  const size_t n = static_cast<size_t>(classes);
  BadTarget bad;
  d.run([&](const RowBatch& b) {
    for (size_t r = 0; r < b.rows; ++r) {
      const int64_t t = static_cast<int64_t>(*b.row<const Index>(kTarget, r));
      T* g = with_grad ? b.row<T>(kGrad, r) : nullptr;
      const bool valid = t != ignore && t >= 0 && t < classes;
      double row_loss = 0.0, weight = 0.0;
      if (t != ignore && !valid) bad.report(b.first_row + static_cast<int64_t>(r), t);
      if (valid) {
        weight = row_weight(b, r, t);
        const double go = per_row_scale ? static_cast<double>(*b.row<const T>(kGradOutput, r)) : scale;
        const T* x2 = kSecond >= 0 ? b.row<const T>(kSecond, r) : nullptr;
        row_loss = weight * row(b.row<const T>(kX, r), x2, static_cast<size_t>(t), g, go * weight, b);
      } else if (g) {
        std::fill(g, g + n, T(0));
      }
      if (none) *b.row<T>(kLoss, r) = static_cast<T>(row_loss);
      *b.row<double>(kSumLoss, r) = row_loss;
      *b.row<double>(kSumWeight, r) = weight;
    }
  }, policy);
  bad.throw_if_any(classes, ignore);
  const double total = d.row_value_sum(kSumLoss);
  return mean ? total / d.row_value_sum(kSumWeight) : total;
}

}  // namespace logitkit
