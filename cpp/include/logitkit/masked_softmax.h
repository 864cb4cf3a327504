// Masked softmax / log_softmax of the C++ API: the op restricted to positions where a mask is set.
#pragma once
#include <cstdint>

#include "logitkit/export.h"
#include "logitkit/softmax.h"
#include "logitkit/view.h"

namespace logitkit {

// y = softmax(x / temperature) along `axis` over the positions where `mask` is nonzero (NumPy's
// where= convention: false/0 = excluded). x, mask and y have the same shape; any strides, 0 included
// (a broadcast mask costs nothing extra); y may alias x exactly.
//  - excluded positions get 0, whatever x holds there (inf and NaN included);
//  - a row with no included position gives all zeros ("safe softmax"; torch gives NaN);
//  - included positions behave exactly as a plain softmax over them (NaN in, NaN out).
// options.algorithm is ignored (the masked kernels always use a three-pass schedule).
// Throws logitkit::Error naming the bad argument ("x", "mask", "y", "axis", "temperature").
// Like every op, a template defined for T = float and double only (see softmax.h).
template <class T>
void masked_softmax(InputView<T> /*x*/, ArrayView<const uint8_t> /*mask*/, ArrayView<T> /*y*/, int /*axis*/,
                    const SoftmaxOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::masked_softmax: T must be float or double");
}
template <> LOGITKIT_API void masked_softmax<float>(InputView<float>, ArrayView<const uint8_t>, ArrayView<float>,
                                                    int, const SoftmaxOptions&);
template <> LOGITKIT_API void masked_softmax<double>(InputView<double>, ArrayView<const uint8_t>, ArrayView<double>,
                                                     int, const SoftmaxOptions&);

// y = log_softmax(x / temperature) over the included positions; excluded positions get -inf, and a
// row with no included position gives all -inf (log of the all-zero masked softmax).
template <class T>
void masked_log_softmax(InputView<T> /*x*/, ArrayView<const uint8_t> /*mask*/, ArrayView<T> /*y*/, int /*axis*/,
                        const SoftmaxOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::masked_log_softmax: T must be float or double");
}
template <> LOGITKIT_API void masked_log_softmax<float>(InputView<float>, ArrayView<const uint8_t>, ArrayView<float>,
                                                        int, const SoftmaxOptions&);
template <> LOGITKIT_API void masked_log_softmax<double>(InputView<double>, ArrayView<const uint8_t>,
                                                         ArrayView<double>, int, const SoftmaxOptions&);

// bool masks: the same bytes viewed as uint8_t (any nonzero byte counts as true).
inline ArrayView<const uint8_t> mask_bytes(ArrayView<const bool> mask) {
  static_assert(sizeof(bool) == 1, "bool masks must be one byte per element");
  ArrayView<const uint8_t> v;
  v.data = reinterpret_cast<const uint8_t*>(mask.data);
  v.ndim = mask.ndim;
  for (int d = 0; d < mask.ndim && d < kMaxDims; ++d) {  // a bad ndim is kept for the library to reject
    v.shape[d] = mask.shape[d];
    v.strides[d] = mask.strides[d];
  }
  return v;
}

template <class T>
void masked_softmax(InputView<T> x, ArrayView<const bool> mask, ArrayView<T> y, int axis,
                    const SoftmaxOptions& options = {}) {
  masked_softmax<T>(x, mask_bytes(mask), y, axis, options);
}

template <class T>
void masked_log_softmax(InputView<T> x, ArrayView<const bool> mask, ArrayView<T> y, int axis,
                        const SoftmaxOptions& options = {}) {
  masked_log_softmax<T>(x, mask_bytes(mask), y, axis, options);
}

}  // namespace logitkit
