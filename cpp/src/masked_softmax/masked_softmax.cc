// masked_softmax / masked_log_softmax drivers: argument checks, N-D row planning over (x, mask, y),
// threading, and gather/scatter for strided rows. Kernels live in masked_softmax_kernels-inl.h.
#include <algorithm>
#include <vector>
#include <cmath>
#include <string>

#include "logitkit/error.h"
#include "logitkit/masked_softmax.h"
#include "masked_softmax/masked_softmax_kernels.h"
#include "runtime/kernel_table.h"
#include "runtime/rows.h"

namespace logitkit {
namespace {

template <class T>
void masked_impl(ArrayView<const T> x, ArrayView<const uint8_t> mask, ArrayView<T> y, int axis,
                 const SoftmaxOptions& options, bool log) {
  check_view(x, "x");
  check_view(mask, "mask");
  check_view(y, "y");
  check_same_shape(mask, x.ndim, x.shape, "mask", "x");
  check_same_shape(y, x.ndim, x.shape, "y", "x");
  axis = normalize_axis(axis, x.ndim);
  const T c = inverse_temperature<T>(options.temperature);
  if (x.size() == 0) return;
  std::vector<T> x_copy;  // inputs that partly overlap y are read from copies
  std::vector<uint8_t> mask_copy;
  x = apart_from(x, y, x_copy);
  mask = apart_from(mask, y, mask_copy);
  const MaskedSoftmaxKernels<T>& k = kernels().masked_softmax.get<T>();
  const auto rows_kernel = log ? k.log_softmax_rows : k.softmax_rows;
  enum { kX, kM, kY };
  const int64_t* strides[3] = {x.strides, mask.strides, y.strides};
  const RowPlan p = plan_rows(x.ndim, x.shape, axis, 3, strides);
  const size_t n = static_cast<size_t>(p.n);

  if (p.contiguous(kX) && p.contiguous(kY)) {
    parallel_rows(p.rows, p.n, [&](int64_t r0, int64_t r1) {
      if (p.contiguous(kM) && p.uniform()) {
        rows_kernel(x.data + r0 * p.row_stride(kX), mask.data + r0 * p.row_stride(kM),
                    y.data + r0 * p.row_stride(kY), size_t(r1 - r0), n, p.row_stride(kX), p.row_stride(kM),
                    p.row_stride(kY), c);
        return;
      }
      // A mask row that is strided or broadcast along the axis (stride 0) is gathered into n
      // bytes of scratch; x and y are used in place.
      uint8_t* mbuf = p.contiguous(kM) ? nullptr : thread_scratch<uint8_t>(n, 0);
      for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* mr = mask.data + p.offset(kM, r);
        if (mbuf) {
          gather_rows(mask.data, p, kM, r, 1, mbuf);
          mr = mbuf;
        }
        rows_kernel(x.data + p.offset(kX, r), mr, y.data + p.offset(kY, r), 1, n, 0, 0, 0, c);
      }
    });
    return;
  }
  // Strided x or y: gather a tile of x and mask rows into per-thread scratch, compute in place,
  // scatter y back.
  const int64_t tile = gather_tile(p.n);
  parallel_rows(p.rows, p.n, [&](int64_t r0, int64_t r1) {
    T* buf = thread_scratch<T>(static_cast<size_t>(tile * p.n), 0);
    uint8_t* mbuf = thread_scratch<uint8_t>(static_cast<size_t>(tile * p.n), 1);
    for (int64_t r = r0; r < r1; r += tile) {
      const int64_t count = std::min(tile, r1 - r);
      gather_rows(x.data, p, kX, r, count, buf);
      gather_rows(mask.data, p, kM, r, count, mbuf);
      rows_kernel(buf, mbuf, buf, size_t(count), n, p.n, p.n, p.n, c);
      scatter_rows(buf, p, kY, r, count, y.data);
    }
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
