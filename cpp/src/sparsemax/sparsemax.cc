// sparsemax / entmax15 / entmax_bisect drivers and their VJPs: argument checks, N-D row planning,
// threading and gather/scatter of strided rows. Kernels live in sparsemax_kernels-inl.h.
#include <algorithm>
#include <vector>
#include <cmath>
#include <limits>
#include <string>

#include "logitkit/error.h"
#include "logitkit/softmax.h"
#include "logitkit/sparsemax.h"
#include "runtime/kernel_table.h"
#include "runtime/overflow.h"
#include "runtime/rows.h"
#include "sparsemax/sparsemax_kernels.h"

namespace logitkit {
namespace {

// alpha must be finite and >= 1, also once rounded to the compute type T.
template <class T>
void check_alpha(double alpha) {
  if (!std::isfinite(alpha) || !(alpha >= 1.0))
    throw Error(Error::Kind::kInvalidArgument, "alpha", "must be a finite number >= 1, got " + shortest_repr(alpha));
  if (!std::isfinite(static_cast<T>(alpha)))
    throw Error(Error::Kind::kInvalidArgument, "alpha",
                shortest_repr(alpha) + " is outside the range of " + (sizeof(T) == 4 ? "float32" : "float64"));
}

// rows_fn over rows whose c x does not overflow; a row where it does (c > 1, |x| near T's max)
// is passed as x - max(x) instead: every op here is shift-invariant, x - max is exact for the
// entries within 2/c of the max (the only ones that can be in the support, which then never
// reaches +-inf), and the others become -inf or large negatives with p = 0. Without the shift
// c x = inf made finite entries look infinite ([0.5, 0.5] for [3e38, 2.9e38] at T = 0.5; NaN rows).
template <class T, class RowsFn>
void rows_shifting_overflows(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c, T* buf,
                             RowsFn& rows_fn) {
  if (!(c > T(1))) return rows_fn(x, y, rows, ldx, ldy, buf);
  size_t start = 0;
  for (size_t r = 0; r < rows; ++r) {
    const T* xr = x + static_cast<ptrdiff_t>(r) * ldx;
    if (!scaled_row_overflows(xr, n, c)) continue;
    if (r > start) rows_fn(x + static_cast<ptrdiff_t>(start) * ldx, y + static_cast<ptrdiff_t>(start) * ldy, r - start, ldx, ldy, buf);
    std::vector<T> shifted(xr, xr + n);
    const T m = *std::max_element(shifted.begin(), shifted.end());
    for (T& v : shifted) v -= m;
    rows_fn(shifted.data(), y + static_cast<ptrdiff_t>(r) * ldy, 1, static_cast<ptrdiff_t>(n), ldy, buf);
    start = r + 1;
  }
  if (rows > start) rows_fn(x + static_cast<ptrdiff_t>(start) * ldx, y + static_cast<ptrdiff_t>(start) * ldy, rows - start, ldx, ldy, buf);
}

// rows_fn(x, y, rows, ldx, ldy, candidates) over every row of the axis; strided rows are
// gathered into per-thread tiles, computed in place and scattered back.
template <class T, class RowsFn>
void forward_impl(ArrayView<const T> x, ArrayView<T> y, int axis, T c, RowsFn&& kernel_rows) {
  const size_t row_n = static_cast<size_t>(x.shape[axis]);
  auto rows_fn = [&](const T* xr, T* yr, size_t rows, ptrdiff_t ldx, ptrdiff_t ldy, T* buf) {
    rows_shifting_overflows<T>(xr, yr, rows, row_n, ldx, ldy, c, buf, kernel_rows);
  };
  std::vector<T> x_copy;  // an x that partly overlaps y is read from a copy
  x = apart_from(x, y, x_copy);
  const int64_t* strides[2] = {x.strides, y.strides};
  const RowPlan p = plan_rows(x.ndim, x.shape, axis, 2, strides);
  const size_t n = static_cast<size_t>(p.n);
  const size_t cand = n + kSparsemaxScratchSlack;
  if (p.contiguous(0) && p.contiguous(1)) {
    parallel_rows(p.rows, p.n, [&](int64_t r0, int64_t r1) {
      T* buf = thread_scratch<T>(cand, 1);
      if (p.uniform()) {
        rows_fn(x.data + r0 * p.row_stride(0), y.data + r0 * p.row_stride(1), size_t(r1 - r0), p.row_stride(0),
                p.row_stride(1), buf);
      } else {
        for (int64_t r = r0; r < r1; ++r) rows_fn(x.data + p.offset(0, r), y.data + p.offset(1, r), 1, 0, 0, buf);
      }
    });
    return;
  }
  const int64_t tile = gather_tile(p.n);
  parallel_rows(p.rows, p.n, [&](int64_t r0, int64_t r1) {
    T* rowsbuf = thread_scratch<T>(static_cast<size_t>(tile * p.n), 0);
    T* buf = thread_scratch<T>(cand, 1);
    for (int64_t r = r0; r < r1; r += tile) {
      const int64_t count = std::min(tile, r1 - r);
      gather_rows(x.data, p, 0, r, count, rowsbuf);
      rows_fn(rowsbuf, rowsbuf, size_t(count), p.n, p.n, buf);
      scatter_rows(rowsbuf, p, 1, r, count, y.data);
    }
  });
}

template <class T>
int check_forward(const ArrayView<const T>& x, const ArrayView<T>& y, int axis) {
  check_view(x, "x");
  check_view(y, "y");
  check_same_shape(y, x.ndim, x.shape, "y", "x");
  return normalize_axis(axis, x.ndim);
}

// rows_fn(y, dy, dx, rows, n, ldy, lddy, lddx, scratch); strided rows go through tiles (dx computed
// over dy's); scratch holds n elements.
template <class T, class RowsFn>
void backward_impl(ArrayView<const T> y, ArrayView<const T> dy, ArrayView<T> dx, int axis, RowsFn&& rows_fn) {
  check_view(y, "y");
  check_view(dy, "dy");
  check_view(dx, "dx");
  check_same_shape(dy, y.ndim, y.shape, "dy", "y");
  check_same_shape(dx, y.ndim, y.shape, "dx", "y");
  axis = normalize_axis(axis, y.ndim);
  if (y.size() == 0) return;
  std::vector<T> y_copy, dy_copy;  // inputs that partly overlap dx are read from copies
  y = apart_from(y, dx, y_copy);
  dy = apart_from(dy, dx, dy_copy);
  const int64_t* strides[3] = {y.strides, dy.strides, dx.strides};
  const RowPlan p = plan_rows(y.ndim, y.shape, axis, 3, strides);
  const size_t n = static_cast<size_t>(p.n);
  if (p.contiguous(0) && p.contiguous(1) && p.contiguous(2)) {
    parallel_rows(p.rows, p.n, [&](int64_t r0, int64_t r1) {
      T* gs = thread_scratch<T>(n, 2);
      if (p.uniform()) {
        rows_fn(y.data + r0 * p.row_stride(0), dy.data + r0 * p.row_stride(1), dx.data + r0 * p.row_stride(2),
                size_t(r1 - r0), n, p.row_stride(0), p.row_stride(1), p.row_stride(2), gs);
      } else {
        for (int64_t r = r0; r < r1; ++r)
          rows_fn(y.data + p.offset(0, r), dy.data + p.offset(1, r), dx.data + p.offset(2, r), 1, n, 0, 0, 0, gs);
      }
    });
    return;
  }
  const int64_t tile = gather_tile(p.n);
  parallel_rows(p.rows, p.n, [&](int64_t r0, int64_t r1) {
    T* ybuf = thread_scratch<T>(static_cast<size_t>(tile * p.n), 0);
    T* gbuf = thread_scratch<T>(static_cast<size_t>(tile * p.n), 1);
    T* gs = thread_scratch<T>(n, 2);
    for (int64_t r = r0; r < r1; r += tile) {
      const int64_t count = std::min(tile, r1 - r);
      gather_rows(y.data, p, 0, r, count, ybuf);
      gather_rows(dy.data, p, 1, r, count, gbuf);
      rows_fn(ybuf, gbuf, gbuf, size_t(count), n, p.n, p.n, p.n, gs);
      scatter_rows(gbuf, p, 2, r, count, dx.data);
    }
  });
}

// The op bodies; the exported specializations at the end of the file call them.
namespace op {

template <class T>
void sparsemax(ArrayView<const T> x, ArrayView<T> y, int axis, const SparsemaxOptions& options) {
  axis = check_forward(x, y, axis);
  const T c = inverse_temperature<T>(options.temperature);
  if (x.size() == 0) return;
  const SparsemaxKernels<T>& k = kernels().sparsemax.get<T>();
  const size_t n = static_cast<size_t>(x.shape[axis]);
  forward_impl<T>(x, y, axis, c, [&](const T* xr, T* yr, size_t rows, ptrdiff_t ldx, ptrdiff_t ldy, T* buf) {
    k.sparsemax_rows(xr, yr, rows, n, ldx, ldy, c, buf);
  });
}

template <class T>
void entmax15(ArrayView<const T> x, ArrayView<T> y, int axis, const SparsemaxOptions& options) {
  axis = check_forward(x, y, axis);
  const T c = inverse_temperature<T>(options.temperature);
  if (x.size() == 0) return;
  const SparsemaxKernels<T>& k = kernels().sparsemax.get<T>();
  const size_t n = static_cast<size_t>(x.shape[axis]);
  forward_impl<T>(x, y, axis, c, [&](const T* xr, T* yr, size_t rows, ptrdiff_t ldx, ptrdiff_t ldy, T* buf) {
    k.entmax15_rows(xr, yr, rows, n, ldx, ldy, c, buf);
  });
}

template <class T>
void entmax_bisect(ArrayView<const T> x, ArrayView<T> y, int axis, const EntmaxBisectOptions& options) {
  axis = check_forward(x, y, axis);
  check_alpha<T>(options.alpha);
  if (options.n_iter < 1)
    throw Error(Error::Kind::kInvalidArgument, "n_iter", "must be >= 1, got " + std::to_string(options.n_iter));
  const T c = inverse_temperature<T>(options.temperature);
  const T alpha = static_cast<T>(options.alpha);
  if (!(alpha > T(1))) {  // alpha == 1 (also after rounding to T): the softmax limit
    SoftmaxOptions so;
    so.temperature = options.temperature;
    softmax<T>(x, y, axis, so);
    return;
  }
  if (x.size() == 0) return;
  const SparsemaxKernels<T>& k = kernels().sparsemax.get<T>();
  const size_t n = static_cast<size_t>(x.shape[axis]);
  const int n_iter = options.n_iter;
  forward_impl<T>(x, y, axis, c, [&](const T* xr, T* yr, size_t rows, ptrdiff_t ldx, ptrdiff_t ldy, T* buf) {
    k.entmax_bisect_rows(xr, yr, rows, n, ldx, ldy, c, alpha, n_iter, buf);
  });
}

template <class T>
void sparsemax_backward(ArrayView<const T> y, ArrayView<const T> dy, ArrayView<T> dx, int axis, double temperature) {
  const T c = inverse_temperature<T>(temperature);
  const SparsemaxKernels<T>& k = kernels().sparsemax.get<T>();
  backward_impl<T>(y, dy, dx, axis,
                   [&](const T* yr, const T* dyr, T* dxr, size_t rows, size_t n, ptrdiff_t a, ptrdiff_t b, ptrdiff_t d,
                       T* gs) {
                     k.sparsemax_backward_rows(yr, dyr, dxr, rows, n, a, b, d, c, gs);
                   });
}

template <class T>
void entmax15_backward(ArrayView<const T> y, ArrayView<const T> dy, ArrayView<T> dx, int axis, double temperature) {
  const T c = inverse_temperature<T>(temperature);
  const SparsemaxKernels<T>& k = kernels().sparsemax.get<T>();
  backward_impl<T>(y, dy, dx, axis,
                   [&](const T* yr, const T* dyr, T* dxr, size_t rows, size_t n, ptrdiff_t a, ptrdiff_t b, ptrdiff_t d,
                       T* gs) {
                     k.entmax15_backward_rows(yr, dyr, dxr, rows, n, a, b, d, c, gs);
                   });
}

template <class T>
void entmax_bisect_backward(ArrayView<const T> y, ArrayView<const T> dy, ArrayView<T> dx, int axis, double alpha,
                            double temperature) {
  check_alpha<T>(alpha);
  const T c = inverse_temperature<T>(temperature);
  const SparsemaxKernels<T>& k = kernels().sparsemax.get<T>();
  const T a = static_cast<T>(alpha);
  backward_impl<T>(y, dy, dx, axis,
                   [&](const T* yr, const T* dyr, T* dxr, size_t rows, size_t n, ptrdiff_t ly, ptrdiff_t ldy,
                       ptrdiff_t ldx, T* gs) {
                     k.entmax_bisect_backward_rows(yr, dyr, dxr, rows, n, ly, ldy, ldx, c, a, gs);
                   });
}

}  // namespace op
}  // namespace

// The float and double specializations that the public header declares (its primary templates
// static_assert for any other element type).
#define LOGITKIT_SPECIALIZE(T)                                                                           \
  template <>                                                                                            \
  void sparsemax<T>(InputView<T> x, ArrayView<T> y, int axis, const SparsemaxOptions& options) {        \
    op::sparsemax<T>(x, y, axis, options);                                                               \
  }                                                                                                      \
  template <>                                                                                            \
  void entmax15<T>(InputView<T> x, ArrayView<T> y, int axis, const SparsemaxOptions& options) {         \
    op::entmax15<T>(x, y, axis, options);                                                                \
  }                                                                                                      \
  template <>                                                                                            \
  void entmax_bisect<T>(InputView<T> x, ArrayView<T> y, int axis, const EntmaxBisectOptions& options) { \
    op::entmax_bisect<T>(x, y, axis, options);                                                           \
  }                                                                                                      \
  template <>                                                                                            \
  void sparsemax_backward<T>(InputView<T> y, InputView<T> dy, ArrayView<T> dx, int axis, double t) {     \
    op::sparsemax_backward<T>(y, dy, dx, axis, t);                                                       \
  }                                                                                                      \
  template <>                                                                                            \
  void entmax15_backward<T>(InputView<T> y, InputView<T> dy, ArrayView<T> dx, int axis, double t) {      \
    op::entmax15_backward<T>(y, dy, dx, axis, t);                                                        \
  }                                                                                                      \
  template <>                                                                                            \
  void entmax_bisect_backward<T>(InputView<T> y, InputView<T> dy, ArrayView<T> dx, int axis, double alpha, \
                                 double t) {                                                             \
    op::entmax_bisect_backward<T>(y, dy, dx, axis, alpha, t);                                            \
  }
LOGITKIT_SPECIALIZE(float)
LOGITKIT_SPECIALIZE(double)
#undef LOGITKIT_SPECIALIZE

}  // namespace logitkit
