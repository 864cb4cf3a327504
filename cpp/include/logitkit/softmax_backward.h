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
// Like every op, a template defined for T = float and double only (see softmax.h).
template <class T>
void softmax_backward(InputView<T> /*y*/, InputView<T> /*dy*/, ArrayView<T> /*dx*/, int /*axis*/,
                      const SoftmaxOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::softmax_backward: T must be float or double");
}
template <> LOGITKIT_API void softmax_backward<float>(InputView<float>, InputView<float>, ArrayView<float>, int,
                                                      const SoftmaxOptions&);
template <> LOGITKIT_API void softmax_backward<double>(InputView<double>, InputView<double>, ArrayView<double>, int,
                                                       const SoftmaxOptions&);

// Given y = log_softmax(x / T): dx = (1/T) (dy - exp(y) sum(dy)).
template <class T>
void log_softmax_backward(InputView<T> /*y*/, InputView<T> /*dy*/, ArrayView<T> /*dx*/, int /*axis*/,
                          const SoftmaxOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::log_softmax_backward: T must be float or double");
}
template <> LOGITKIT_API void log_softmax_backward<float>(InputView<float>, InputView<float>, ArrayView<float>, int,
                                                          const SoftmaxOptions&);
template <> LOGITKIT_API void log_softmax_backward<double>(InputView<double>, InputView<double>, ArrayView<double>,
                                                           int, const SoftmaxOptions&);

// Backward of masked_softmax / masked_log_softmax: the sums run over included positions only and
// excluded positions get dx = 0 (so a row with nothing included gives zeros). `mask` has y's shape,
// any strides (0 for broadcast); nonzero = included.
template <class T>
void masked_softmax_backward(InputView<T> /*y*/, InputView<T> /*dy*/, ArrayView<const uint8_t> /*mask*/,
                             ArrayView<T> /*dx*/, int /*axis*/, const SoftmaxOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::masked_softmax_backward: T must be float or double");
}
template <> LOGITKIT_API void masked_softmax_backward<float>(InputView<float>, InputView<float>,
                                                             ArrayView<const uint8_t>, ArrayView<float>, int,
                                                             const SoftmaxOptions&);
template <> LOGITKIT_API void masked_softmax_backward<double>(InputView<double>, InputView<double>,
                                                              ArrayView<const uint8_t>, ArrayView<double>, int,
                                                              const SoftmaxOptions&);
template <class T>
void masked_log_softmax_backward(InputView<T> /*y*/, InputView<T> /*dy*/, ArrayView<const uint8_t> /*mask*/,
                                 ArrayView<T> /*dx*/, int /*axis*/, const SoftmaxOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::masked_log_softmax_backward: T must be float or double");
}
template <> LOGITKIT_API void masked_log_softmax_backward<float>(InputView<float>, InputView<float>,
                                                                 ArrayView<const uint8_t>, ArrayView<float>, int,
                                                                 const SoftmaxOptions&);
template <> LOGITKIT_API void masked_log_softmax_backward<double>(InputView<double>, InputView<double>,
                                                                  ArrayView<const uint8_t>, ArrayView<double>, int,
                                                                  const SoftmaxOptions&);

template <class T>
void masked_softmax_backward(InputView<T> y, InputView<T> dy, ArrayView<const bool> mask,
                             ArrayView<T> dx, int axis, const SoftmaxOptions& options = {}) {
  masked_softmax_backward<T>(y, dy, mask_bytes(mask), dx, axis, options);
}
template <class T>
void masked_log_softmax_backward(InputView<T> y, InputView<T> dy, ArrayView<const bool> mask,
                                 ArrayView<T> dx, int axis, const SoftmaxOptions& options = {}) {
  masked_log_softmax_backward<T>(y, dy, mask_bytes(mask), dx, axis, options);
}

}  // namespace logitkit
