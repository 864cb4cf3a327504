// softmax / log_softmax backward (plain and masked): operands declared to the row driver
// (runtime/row_driver.h). Kernels live in softmax_backward_kernels-inl.h.
#include "logitkit/error.h"
#include "logitkit/runtime.h"
#include "logitkit/softmax_backward.h"
#include "runtime/kernel_table.h"
#include "runtime/row_driver.h"
#include "softmax_backward/softmax_backward_kernels.h"

namespace logitkit {
namespace {

template <class T>
void backward_impl(ArrayView<const T> y, ArrayView<const T> dy, const ArrayView<const uint8_t>* mask_or_null,
                   ArrayView<T> dx, int axis, const SoftmaxOptions& options, bool log) {
  const bool masked = mask_or_null != nullptr;
  RowDriver d(axis);
  const int kY = d.input(y, "y"), kDy = d.input(dy, "dy"), kDx = d.output(dx, "dx");
  // A mask row strided or broadcast along the axis is gathered into n bytes of scratch.
  const int kM = masked ? d.input(*mask_or_null, "mask", RowExtent::kRow, 0, RowRead::kGatherPerRow) : -1;
  d.check();
  const T c = inverse_temperature<T>(options.temperature);
  if (y.size() == 0) return;
  const SoftmaxBackwardKernels<T>& k = kernels().softmax_backward.get<T>();
  const auto rows_kernel = log ? k.log_softmax_backward_rows : k.softmax_backward_rows;
  // dx far beyond the last-level cache is written with non-temporal stores (no read-for-ownership);
  // never into the driver's scratch tiles, which are read back at once.
  const bool stream = static_cast<size_t>(d.rows() * d.n()) * sizeof(T) >= last_level_cache_bytes();
  d.run([&](const RowBatch& b) {
    rows_kernel(b.data<const T>(kY), b.data<const T>(kDy), masked ? b.data<const uint8_t>(kM) : nullptr,
                b.data<T>(kDx), b.rows, b.n, b.ld[kY], b.ld[kDy], masked ? b.ld[kM] : 0, b.ld[kDx], c,
                stream && !b.gathered);
  });
}

}  // namespace

// The float and double specializations that the public header declares (its primary templates
// static_assert for any other element type).
#define LOGITKIT_SPECIALIZE(T)                                                                           \
  template <>                                                                                            \
  void softmax_backward<T>(InputView<T> y, InputView<T> dy, ArrayView<T> dx, int axis,                   \
                           const SoftmaxOptions& options) {                                              \
    backward_impl<T>(y, dy, nullptr, dx, axis, options, false);                                          \
  }                                                                                                      \
  template <>                                                                                            \
  void log_softmax_backward<T>(InputView<T> y, InputView<T> dy, ArrayView<T> dx, int axis,               \
                               const SoftmaxOptions& options) {                                          \
    backward_impl<T>(y, dy, nullptr, dx, axis, options, true);                                           \
  }                                                                                                      \
  template <>                                                                                            \
  void masked_softmax_backward<T>(InputView<T> y, InputView<T> dy, ArrayView<const uint8_t> mask,        \
                                  ArrayView<T> dx, int axis, const SoftmaxOptions& options) {            \
    backward_impl<T>(y, dy, &mask, dx, axis, options, false);                                            \
  }                                                                                                      \
  template <>                                                                                            \
  void masked_log_softmax_backward<T>(InputView<T> y, InputView<T> dy, ArrayView<const uint8_t> mask,    \
                                      ArrayView<T> dx, int axis, const SoftmaxOptions& options) {        \
    backward_impl<T>(y, dy, &mask, dx, axis, options, true);                                             \
  }
LOGITKIT_SPECIALIZE(float)
LOGITKIT_SPECIALIZE(double)
#undef LOGITKIT_SPECIALIZE

}  // namespace logitkit
