// cross_entropy's row loop over part of a batch, for ops that form the logits a chunk of rows at a
// time (linear_cross_entropy): the gradient is scaled by the whole batch's "mean" normalisers,
// given by the caller, and the chunk's sums are returned for the caller to reduce in order.
#pragma once
#include <cstdint>

#include "logitkit/cross_entropy.h"

namespace logitkit {

// The "mean" normalisers of a batch: the sum over the rows not ignored of weight[t_r] *
// sample_weight[r] (the loss's) and of sample_weight[r] (the z-loss's). Throws naming "target" for
// a class index out of range. `logits` gives the shape only and is never read.
struct CrossEntropyNormalisers {
  double weight, rows;
};
template <class T, class Index>
CrossEntropyNormalisers cross_entropy_normalisers(ArrayView<const T> logits, ArrayView<const Index> target, int axis,
                                                  const LossWeights<T>& weights, int64_t ignore);

struct CrossEntropyChunk {
  double scale = 1.0, z_scale = 1.0;  // in: d loss / d (sum of the row losses), and of the row z-losses
  double loss = 0.0, weight = 0.0;    // out: the chunk's summed row losses and "mean" weights
  double z = 0.0, rows = 0.0;         // out: its summed z-losses and their "mean" weights
};

// cross_entropy(logits, target, ...) on the chunk's rows, with grad.grad scaled by chunk.scale and
// chunk.z_scale (grad.grad_output_rows still scales the rows of reduction "none").
template <class T, class Index>
void cross_entropy_chunk(ArrayView<const T> logits, ArrayView<const Index> target, const LossOptions& options,
                         const CrossEntropyOptions& ce, const LossWeights<T>& weights, ArrayView<T> loss,
                         const LossGrad<T>& grad, CrossEntropyChunk& chunk);

}  // namespace logitkit
