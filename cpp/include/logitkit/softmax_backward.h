// Backward passes (vector-Jacobian products) of softmax and log_softmax, plain and masked.
#pragma once
#include <cstdint>

#include "logitkit/export.h"
#include "logitkit/masked_softmax.h"
#include "logitkit/softmax.h"
#include "logitkit/view.h"

namespace logitkit {

// Given y = softmax(x / T) along `axis` and the upstream gradient dy = dL/dy, writes
// dx = dL/dx = (1/T) y (dy - sum(y dy)). `options` are the forward's (temperature; algorithm is
// irrelevant). y, dy and dx have the same shape, any strides; dx may alias y or dy exactly.
// Throws logitkit::Error naming the bad argument ("y", "dy", "dx", "axis", "temperature").
template <class T>
LOGITKIT_API void softmax_backward(ArrayView<const T> y, ArrayView<const T> dy, ArrayView<T> dx, int axis,
                                   const SoftmaxOptions& options = {});

// Given y = log_softmax(x / T): dx = (1/T) (dy - exp(y) sum(dy)).
template <class T>
LOGITKIT_API void log_softmax_backward(ArrayView<const T> y, ArrayView<const T> dy, ArrayView<T> dx, int axis,
                                       const SoftmaxOptions& options = {});

// Backward of masked_softmax / masked_log_softmax: the sums run over included positions only and
// excluded positions get dx = 0 (so a row with nothing included gives zeros). `mask` has y's shape,
// any strides (0 for broadcast); nonzero = included.
template <class T>
LOGITKIT_API void masked_softmax_backward(ArrayView<const T> y, ArrayView<const T> dy,
                                          ArrayView<const uint8_t> mask, ArrayView<T> dx, int axis,
                                          const SoftmaxOptions& options = {});
template <class T>
LOGITKIT_API void masked_log_softmax_backward(ArrayView<const T> y, ArrayView<const T> dy,
                                              ArrayView<const uint8_t> mask, ArrayView<T> dx, int axis,
                                              const SoftmaxOptions& options = {});

template <class T>
void masked_softmax_backward(ArrayView<const T> y, ArrayView<const T> dy, ArrayView<const bool> mask,
                             ArrayView<T> dx, int axis, const SoftmaxOptions& options = {}) {
  masked_softmax_backward<T>(y, dy, mask_bytes(mask), dx, axis, options);
}
template <class T>
void masked_log_softmax_backward(ArrayView<const T> y, ArrayView<const T> dy, ArrayView<const bool> mask,
                                 ArrayView<T> dx, int axis, const SoftmaxOptions& options = {}) {
  masked_log_softmax_backward<T>(y, dy, mask_bytes(mask), dx, axis, options);
}

}  // namespace logitkit
