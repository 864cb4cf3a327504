// masked_softmax / masked_log_softmax: operands declared to the row driver (runtime/row_driver.h).
// Kernels live in masked_softmax_kernels-inl.h.
#include "logitkit/error.h"
#include "logitkit/masked_softmax.h"
#include "masked_softmax/masked_softmax_kernels.h"
#include "runtime/kernel_table.h"
#include "runtime/row_driver.h"

namespace logitkit {
namespace {

template <class T>
void masked_impl(ArrayView<const T> x, ArrayView<const uint8_t> mask, ArrayView<T> y, int axis,
                 const SoftmaxOptions& options, bool log) {
  RowDriver d(axis);
  // A mask row strided or broadcast along the axis (stride 0) is gathered into n bytes of scratch
  // while x and y stay in place.
  const int kX = d.input(x, "x"), kM = d.input(mask, "mask", RowExtent::kRow, 0, RowRead::kGatherPerRow);
  const int kY = d.output(y, "y");
  d.check();
  const T c = inverse_temperature<T>(options.temperature);
  if (x.size() == 0) return;
  const MaskedSoftmaxKernels<T>& k = kernels().masked_softmax.get<T>();
  const auto rows_kernel = log ? k.log_softmax_rows : k.softmax_rows;
  d.run([&](const RowBatch& b) {
    rows_kernel(b.data<const T>(kX), b.data<const uint8_t>(kM), b.data<T>(kY), b.rows, b.n, b.ld[kX], b.ld[kM],
                b.ld[kY], c);
  });
}

}  // namespace

// The float and double specializations that the public header declares (its primary templates
// static_assert for any other element type).
#define LOGITKIT_SPECIALIZE(T)                                                                           \
  template <>                                                                                            \
  void masked_softmax<T>(InputView<T> x, ArrayView<const uint8_t> mask, ArrayView<T> y, int axis,        \
                         const SoftmaxOptions& options) {                                                \
    masked_impl<T>(x, mask, y, axis, options, false);                                                    \
  }                                                                                                      \
  template <>                                                                                            \
  void masked_log_softmax<T>(InputView<T> x, ArrayView<const uint8_t> mask, ArrayView<T> y, int axis,    \
                             const SoftmaxOptions& options) {                                            \
    masked_impl<T>(x, mask, y, axis, options, true);                                                     \
  }
LOGITKIT_SPECIALIZE(float)
LOGITKIT_SPECIALIZE(double)
#undef LOGITKIT_SPECIALIZE

}  // namespace logitkit
