// Argument checks and helpers shared by the loss drivers (nll_loss.cc, cross_entropy.cc).
#pragma once
#include <mutex>
#include <cstdint>
#include <limits>
#include <string>

#include "logitkit/error.h"
#include "logitkit/loss.h"
#include "logitkit/view.h"
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

}  // namespace logitkit
