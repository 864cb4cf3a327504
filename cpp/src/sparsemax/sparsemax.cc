// sparsemax / entmax15 / entmax_bisect and their VJPs: operands declared to the row driver
// (runtime/row_driver.h), plus the rescue of rows whose scaled values overflow. Kernels live in
// sparsemax_kernels-inl.h.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "logitkit/error.h"
#include "logitkit/softmax.h"
#include "logitkit/sparsemax.h"
#include "runtime/kernel_table.h"
#include "runtime/loss_support.h"
#include "runtime/overflow.h"
#include "runtime/row_driver.h"
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

// kernel_rows(x, y, rows, ldx, ldy, candidates) over every row of the declared x and y;
// candidates: per-thread scratch of n + kSparsemaxScratchSlack elements.
template <class T, class RowsFn>
void forward_rows(RowDriver& d, int kX, int kY, T c, RowsFn&& kernel_rows) {
  const size_t n = static_cast<size_t>(d.n());
  RowPolicy policy;
  policy.scratch_bytes = (n + kSparsemaxScratchSlack) * sizeof(T);
  d.run(
      [&](const RowBatch& b) {
        rows_shifting_overflows<T>(b.data<const T>(kX), b.data<T>(kY), b.rows, n, b.ld[kX], b.ld[kY], c,
                                   static_cast<T*>(b.scratch), kernel_rows);
      },
      policy);
}

// rows_fn(y, dy, dx, rows, n, ldy, lddy, lddx, scratch) over every row; scratch holds n elements.
template <class T, class RowsFn>
void vjp_rows(ArrayView<const T> y, ArrayView<const T> dy, ArrayView<T> dx, int axis, RowsFn&& rows_fn) {
  RowDriver d(axis);
  const int kY = d.input(y, "y"), kDy = d.input(dy, "dy"), kDx = d.output(dx, "dx");
  d.check();
  if (y.size() == 0) return;
  const size_t n = static_cast<size_t>(d.n());
  RowPolicy policy;
  policy.scratch_bytes = n * sizeof(T);
  d.run(
      [&](const RowBatch& b) {
        rows_fn(b.data<const T>(kY), b.data<const T>(kDy), b.data<T>(kDx), b.rows, n, b.ld[kY], b.ld[kDy],
                b.ld[kDx], static_cast<T*>(b.scratch));
      },
      policy);
}

// The op bodies; the exported specializations at the end of the file call them.
namespace op {

template <class T>
void sparsemax(ArrayView<const T> x, ArrayView<T> y, int axis, const SparsemaxOptions& options) {
  RowDriver d(axis);
  const int kX = d.input(x, "x"), kY = d.output(y, "y");
  d.check();
  const T c = inverse_temperature<T>(options.temperature);
  if (x.size() == 0) return;
  const SparsemaxKernels<T>& k = kernels().sparsemax.get<T>();
  const size_t n = static_cast<size_t>(d.n());
  forward_rows<T>(d, kX, kY, c, [&](const T* xr, T* yr, size_t rows, ptrdiff_t ldx, ptrdiff_t ldy, T* buf) {
    k.sparsemax_rows(xr, yr, rows, n, ldx, ldy, c, buf);
  });
}

template <class T>
void entmax15(ArrayView<const T> x, ArrayView<T> y, int axis, const SparsemaxOptions& options) {
  RowDriver d(axis);
  const int kX = d.input(x, "x"), kY = d.output(y, "y");
  d.check();
  const T c = inverse_temperature<T>(options.temperature);
  if (x.size() == 0) return;
  const SparsemaxKernels<T>& k = kernels().sparsemax.get<T>();
  const size_t n = static_cast<size_t>(d.n());
  forward_rows<T>(d, kX, kY, c, [&](const T* xr, T* yr, size_t rows, ptrdiff_t ldx, ptrdiff_t ldy, T* buf) {
    k.entmax15_rows(xr, yr, rows, n, ldx, ldy, c, buf);
  });
}

template <class T>
void entmax_bisect(ArrayView<const T> x, ArrayView<T> y, int axis, const EntmaxBisectOptions& options) {
  RowDriver d(axis);
  const int kX = d.input(x, "x"), kY = d.output(y, "y");
  const int checked_axis = d.check();
  check_alpha<T>(options.alpha);
  if (options.n_iter < 1)
    throw Error(Error::Kind::kInvalidArgument, "n_iter", "must be >= 1, got " + std::to_string(options.n_iter));
  const T c = inverse_temperature<T>(options.temperature);
  const T alpha = static_cast<T>(options.alpha);
  if (!(alpha > T(1))) {  // alpha == 1 (also after rounding to T): the softmax limit
    SoftmaxOptions so;
    so.temperature = options.temperature;
    softmax<T>(x, y, checked_axis, so);
    return;
  }
  if (x.size() == 0) return;
  const SparsemaxKernels<T>& k = kernels().sparsemax.get<T>();
  const size_t n = static_cast<size_t>(d.n());
  const int n_iter = options.n_iter;
  forward_rows<T>(d, kX, kY, c, [&](const T* xr, T* yr, size_t rows, ptrdiff_t ldx, ptrdiff_t ldy, T* buf) {
    k.entmax_bisect_rows(xr, yr, rows, n, ldx, ldy, c, alpha, n_iter, buf);
  });
}

template <class T>
void sparsemax_backward(ArrayView<const T> y, ArrayView<const T> dy, ArrayView<T> dx, int axis, double temperature) {
  const T c = inverse_temperature<T>(temperature);
  const SparsemaxKernels<T>& k = kernels().sparsemax.get<T>();
  vjp_rows<T>(y, dy, dx, axis,
                   [&](const T* yr, const T* dyr, T* dxr, size_t rows, size_t n, ptrdiff_t a, ptrdiff_t b, ptrdiff_t d,
                       T* gs) {
                     k.sparsemax_backward_rows(yr, dyr, dxr, rows, n, a, b, d, c, gs);
                   });
}

template <class T>
void entmax15_backward(ArrayView<const T> y, ArrayView<const T> dy, ArrayView<T> dx, int axis, double temperature) {
  const T c = inverse_temperature<T>(temperature);
  const SparsemaxKernels<T>& k = kernels().sparsemax.get<T>();
  vjp_rows<T>(y, dy, dx, axis,
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
  vjp_rows<T>(y, dy, dx, axis,
                   [&](const T* yr, const T* dyr, T* dxr, size_t rows, size_t n, ptrdiff_t ly, ptrdiff_t ldy,
                       ptrdiff_t ldx, T* gs) {
                     k.entmax_bisect_backward_rows(yr, dyr, dxr, rows, n, ly, ldy, ldx, c, a, gs);
                   });
}

// The Fenchel-Young loss through class_index_loss: p* of the row into L2 scratch, then
// <p*, z> and the regulariser over the support, and the gradient k c (p* - e_t) with
// cross_entropy's gradient kernel.
template <class T, class Index>
double fenchel_young(FenchelYoung kind, ArrayView<const T> x, ArrayView<const Index> target,
                     const LossOptions& options, const SparsemaxOptions& so, const LossWeights<T>& weights,
                     ArrayView<T> loss, const LossGrad<T>& grad) {
  if (kind != FenchelYoung::kSparsemax && kind != FenchelYoung::kEntmax15)
    throw Error(Error::Kind::kInvalidArgument, "kind", "not a FenchelYoung value: " + std::to_string(int(kind)));
  const T c = inverse_temperature<T>(so.temperature);
  const SparsemaxKernels<T>& k = kernels().sparsemax.get<T>();
  const CrossEntropyKernels<T>& ce = kernels().cross_entropy.get<T>();
  const int axis = options.axis < 0 ? options.axis + x.ndim : options.axis;
  const size_t n = axis >= 0 && axis < x.ndim && x.data ? static_cast<size_t>(x.shape[axis]) : 0;
  const size_t stride = n + kSparsemaxScratchSlack;
  RowPolicy policy;
  policy.scratch_bytes = 2 * stride * sizeof(T);
  const bool sparse = kind == FenchelYoung::kSparsemax;
  return class_index_loss<T, Index>(
      x, "logits", target, options, weights, loss, grad, policy,
      [&](const T* xr, const T*, size_t t, T* g, double kk, const RowBatch& b) -> double {
        T* p = static_cast<T*>(b.scratch);
        T* buf = p + stride;
        const auto ld = static_cast<ptrdiff_t>(n);
        if (sparse) {
          k.sparsemax_rows(xr, p, 1, n, ld, ld, c, buf);
        } else {
          k.entmax15_rows(xr, p, 1, n, ld, ld, c, buf);
        }
        // <p - e_t, z> as sum_i p_i (z_i - z_t) (sum p = 1): no cancellation of two large terms,
        // exact for tied maxima; and sum p^2 (sum p^1.5) over the support
        const double x_t = static_cast<double>(xr[t]);
        double pz = 0.0, reg = 0.0;
        for (size_t i = 0; i < n; ++i) {
          if (p[i] == T(0)) continue;
          const double pi = static_cast<double>(p[i]);
          pz += pi * (static_cast<double>(c) * (static_cast<double>(xr[i]) - x_t));
          reg += sparse ? pi * pi : pi * std::sqrt(pi);
        }
        const double value = pz + (sparse ? 0.5 * (1.0 - reg) : (1.0 - reg) / 0.75);
        if (g) {
          GradCoeffs<T> gc{};
          gc.alpha = static_cast<T>(kk * static_cast<double>(c));
          gc.delta = gc.alpha;
          gc.index = t;
          ce.grad(p, nullptr, nullptr, nullptr, g, n, gc, false);
        }
        return std::max(value, 0.0);  // >= 0 in exact arithmetic; rounding can leave -eps
      });
}

}  // namespace op
}  // namespace

#define LOGITKIT_SPECIALIZE_FY(T, Index)                                                                       \
  template <>                                                                                                  \
  double fenchel_young_loss<T, Index>(FenchelYoung kind, InputView<T> logits, ArrayView<const Index> target,  \
                                      const LossOptions& options, const SparsemaxOptions& so,                 \
                                      const LossWeights<T>& weights, ArrayView<T> loss, const LossGrad<T>& grad) { \
    return op::fenchel_young<T, Index>(kind, logits, target, options, so, weights, loss, grad);               \
  }
LOGITKIT_SPECIALIZE_FY(float, int32_t)
LOGITKIT_SPECIALIZE_FY(float, int64_t)
LOGITKIT_SPECIALIZE_FY(double, int32_t)
LOGITKIT_SPECIALIZE_FY(double, int64_t)
#undef LOGITKIT_SPECIALIZE_FY

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
