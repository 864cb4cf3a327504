// softmax / log_softmax backward drivers (plain and masked): argument checks, N-D row planning over
// (y, dy, mask, dx), threading, gather/scatter for strided rows. Kernels live in
// softmax_backward_kernels-inl.h.
#include <algorithm>
#include <vector>
#include <cmath>
#include <string>

#include "logitkit/error.h"
#include "logitkit/runtime.h"
#include "logitkit/softmax_backward.h"
#include "runtime/kernel_table.h"
#include "runtime/rows.h"
#include "softmax_backward/softmax_backward_kernels.h"

namespace logitkit {
namespace {

template <class T>
void backward_impl(ArrayView<const T> y, ArrayView<const T> dy, const ArrayView<const uint8_t>* mask_or_null,
                   ArrayView<T> dx, int axis, const SoftmaxOptions& options, bool log) {
  const bool masked = mask_or_null != nullptr;
  ArrayView<const uint8_t> mask = masked ? *mask_or_null : ArrayView<const uint8_t>{};
  check_view(y, "y");
  check_view(dy, "dy");
  check_view(dx, "dx");
  check_same_shape(dy, y.ndim, y.shape, "dy", "y");
  check_same_shape(dx, y.ndim, y.shape, "dx", "y");
  if (masked) {
    check_view(mask, "mask");
    check_same_shape(mask, y.ndim, y.shape, "mask", "y");
  }
  axis = normalize_axis(axis, y.ndim);
  const T c = inverse_temperature<T>(options.temperature);
  if (y.size() == 0) return;
  std::vector<T> y_copy, dy_copy;  // inputs that partly overlap dx are read from copies
  std::vector<uint8_t> mask_copy;
  y = apart_from(y, dx, y_copy);
  dy = apart_from(dy, dx, dy_copy);
  if (masked) mask = apart_from(mask, dx, mask_copy);
  const SoftmaxBackwardKernels<T>& k = kernels().softmax_backward.get<T>();
  const auto rows_kernel = log ? k.log_softmax_backward_rows : k.softmax_backward_rows;
  enum { kY, kDy, kDx, kM };
  const int64_t* strides[4] = {y.strides, dy.strides, dx.strides, masked ? mask.strides : y.strides};
  const RowPlan p = plan_rows(y.ndim, y.shape, axis, 4, strides);
  const size_t n = static_cast<size_t>(p.n);
  const bool mask_contiguous = !masked || p.contiguous(kM);
  // dx far beyond the last-level cache is written with non-temporal stores (no read-for-ownership).
  const bool stream = static_cast<size_t>(p.rows) * n * sizeof(T) >= last_level_cache_bytes();

  if (p.contiguous(kY) && p.contiguous(kDy) && p.contiguous(kDx)) {
    parallel_rows(p.rows, p.n, [&](int64_t r0, int64_t r1) {
      if (mask_contiguous && p.uniform()) {
        rows_kernel(y.data + r0 * p.row_stride(kY), dy.data + r0 * p.row_stride(kDy),
                    masked ? mask.data + r0 * p.row_stride(kM) : nullptr, dx.data + r0 * p.row_stride(kDx),
                    size_t(r1 - r0), n, p.row_stride(kY), p.row_stride(kDy), p.row_stride(kM),
                    p.row_stride(kDx), c, stream);
        return;
      }
      // A mask row strided or broadcast along the axis is gathered into n bytes of scratch.
      uint8_t* mbuf = mask_contiguous ? nullptr : thread_scratch<uint8_t>(n, 0);
      for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* mr = masked ? mask.data + p.offset(kM, r) : nullptr;
        if (mbuf) {
          gather_rows(mask.data, p, kM, r, 1, mbuf);
          mr = mbuf;
        }
        rows_kernel(y.data + p.offset(kY, r), dy.data + p.offset(kDy, r), mr, dx.data + p.offset(kDx, r), 1, n,
                    0, 0, 0, 0, c, stream);
      }
    });
    return;
  }
  // Strided rows: gather tiles of y, dy (and the mask) into per-thread scratch, compute dx into the
  // dy tile, scatter it back.
  const int64_t tile = gather_tile(p.n);
  parallel_rows(p.rows, p.n, [&](int64_t r0, int64_t r1) {
    T* ybuf = thread_scratch<T>(static_cast<size_t>(tile * p.n), 0);
    T* dybuf = thread_scratch<T>(static_cast<size_t>(tile * p.n), 1);
    uint8_t* mbuf = masked ? thread_scratch<uint8_t>(static_cast<size_t>(tile * p.n), 0) : nullptr;
    for (int64_t r = r0; r < r1; r += tile) {
      const int64_t count = std::min(tile, r1 - r);
      gather_rows(y.data, p, kY, r, count, ybuf);
      gather_rows(dy.data, p, kDy, r, count, dybuf);
      if (masked) gather_rows(mask.data, p, kM, r, count, mbuf);
      rows_kernel(ybuf, dybuf, mbuf, dybuf, size_t(count), n, p.n, p.n, p.n, p.n, c, false);
      scatter_rows(dybuf, p, kDx, r, count, dx.data);
    }
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
