// Vocabulary shared by every loss on logits (PyTorch's names and semantics): the reduction, the
// ignored target, class and per-row weights, and the gradient outputs.
#pragma once
#include <cstdint>

#include "logitkit/view.h"

namespace logitkit {

enum class Reduction : uint8_t {
  kNone,  // one loss per row, written to the loss view
  kSum,   // the sum over rows
  kMean,  // the weighted mean: sum over rows of w_r loss_r / sum of w_r (see LossWeights)
};

struct LossOptions {
  Reduction reduction = Reduction::kMean;
  int64_t ignore_index = -100;  // rows with this target add nothing: loss 0, weight 0, gradient 0
  int axis = -1;                // the class axis; every other axis is a batch axis
};

// Optional weights (a view with data == nullptr is absent). A row r with target t weighs
// w_r = weight[t] * sample_weight[r] (each 1 when absent, 0 for an ignored row); "mean" divides
// the sum of w_r loss_r by the sum of w_r, as PyTorch does with class weights, so with neither
// weight it is the mean over the rows not ignored (NaN when every row is ignored, as PyTorch).
template <class T>
struct LossWeights {
  ArrayView<const T> weight;         // per class: shape (C,)
  ArrayView<const T> sample_weight;  // per row: the target's shape
};

// The gradient with respect to the loss's input, when grad.data != nullptr: the input's shape,
// any strides, and it may be the input itself (computed in place after the loss is read). It is
// scaled by the upstream gradient: grad_output for "sum" and "mean", grad_output_rows (the
// target's shape; absent: all grad_output) for "none".
template <class T>
struct LossGrad {
  ArrayView<T> grad;
  double grad_output = 1.0;
  ArrayView<const T> grad_output_rows;
};

}  // namespace logitkit
