// entropy and collapse_fraction drivers: argument checks, N-D row planning (gather for strided
// rows), threading and the per-row finish in double. Kernels live in entropy_kernels-inl.h.
#include <algorithm>
#include <vector>
#include <atomic>
#include <cmath>
#include <limits>
#include <string>

#include "logitkit/entropy.h"
#include "logitkit/error.h"
#include "runtime/kernel_table.h"
#include "runtime/rows.h"
#include "entropy/entropy_kernels.h"
#include "softmax/softmax_kernels.h"

namespace logitkit {
namespace {

// Calls row(r, xr, n) for every row of x along `axis` (rows planned together with `other`, a view
// of x's shape such as the expanded output). Strided rows are gathered into per-thread scratch.
template <class T, class Row>
void for_each_row(const ArrayView<const T>& x, const int64_t* other_strides, int axis, Row&& row) {
  const int64_t* strides[2] = {x.strides, other_strides};
  const RowPlan p = plan_rows(x.ndim, x.shape, axis, 2, strides);
  if (p.rows == 0) return;
  const size_t n = static_cast<size_t>(p.n);
  if (p.contiguous(0) || p.n == 0) {
    parallel_rows(p.rows, p.n, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) row(p, r, x.data + (p.n ? p.offset(0, r) : 0), n);
    });
    return;
  }
  const int64_t tile = gather_tile(p.n);
  parallel_rows(p.rows, p.n, [&](int64_t r0, int64_t r1) {
    T* buf = thread_scratch<T>(static_cast<size_t>(tile * p.n), 0);
    for (int64_t r = r0; r < r1; r += tile) {
      const int64_t count = std::min(tile, r1 - r);
      gather_rows(x.data, p, 0, r, count, buf);
      for (int64_t t = 0; t < count; ++t) row(p, r + t, buf + t * p.n, n);
    }
  });
}

// Entropy of one row from its max and sums: log k + log1p(u/k) - A/Z, all terms >= 0.
template <class T>
T finish_entropy(T m, size_t n, const EntropySums& s) {
  if (n == 0 || !std::isfinite(m) || !(s.ties >= 1.0)) return std::numeric_limits<T>::quiet_NaN();
  const double k = s.ties, z = k + s.untied;
  return static_cast<T>(std::log(k) + std::log1p(s.untied / k) - s.zexp / z);
}

// Does softmax in `dtype` give p_max == 1 for a row whose unique max term is 1 and whose other
// terms sum to r?
// Whether softmax's largest output p (in T) is exactly 1.0 once in `dtype`: float16 and bfloat16
// results are softmax in float rounded to nearest even, which gives 1.0 from the midpoint below it.
bool rounds_to_one(double p, CollapseDtype dtype) {
  switch (dtype) {
    case CollapseDtype::kFloat64:
    case CollapseDtype::kFloat32:
      return p == 1.0;
    case CollapseDtype::kFloat16:
      return p >= 1.0 - 0x1p-12;
    case CollapseDtype::kBFloat16:
      return p >= 1.0 - 0x1p-9;
  }
  return false;
}

// The op bodies; the exported specializations at the end of the file call them.
namespace op {

template <class T>
void entropy(ArrayView<const T> x, ArrayView<T> out, int axis, const EntropyOptions& options) {
  check_view(x, "x");
  check_view(out, "out");
  axis = normalize_axis(axis, x.ndim);
  const ArrayView<T> full = expand_reduced(out, x, axis, "out");
  const T c = inverse_temperature<T>(options.temperature);
  std::vector<T> x_copy;  // an x that partly overlaps out is read from a copy
  x = apart_from(x, out, x_copy);
  const auto& sm = kernels().softmax.get<T>();
  const auto& k = kernels().entropy.get<T>();
  for_each_row<T>(x, full.strides, axis, [&](const RowPlan& p, int64_t r, const T* xr, size_t n) {
    const T m = n ? sm.max(xr, n) : T(0);
    EntropySums s{0.0, 0.0, 0.0};
    if (n && std::isfinite(m)) s = k.sums(xr, n, m, c);
    out.data[p.offset(1, r)] = finish_entropy<T>(m, n, s);
  });
}

template <class T>
double collapse_fraction(ArrayView<const T> x, int axis, CollapseDtype dtype) {
  check_view(x, "x");
  axis = normalize_axis(axis, x.ndim);
  switch (dtype) {
    case CollapseDtype::kFloat64:
    case CollapseDtype::kFloat32:
    case CollapseDtype::kFloat16:
    case CollapseDtype::kBFloat16:
      break;
    default:
      throw Error(Error::Kind::kInvalidArgument, "dtype",
                  "not a CollapseDtype value: " + std::to_string(static_cast<int>(dtype)));
  }
  if ((dtype == CollapseDtype::kFloat64) != (sizeof(T) == 8))
    throw Error(Error::Kind::kInvalidArgument, "dtype",
                "float64 collapse needs double logits and float32/float16/bfloat16 collapse float logits");
  std::atomic<int64_t> count{0};
  int64_t rows = 1;
  for (int d = 0; d < x.ndim; ++d)
    if (d != axis) rows *= x.shape[d];
  const auto& sm = kernels().softmax.get<T>();
  // By construction the rows where softmax(x) itself puts exactly 1.0 on its max: each row's
  // softmax (default options, so the same algorithm and bits as softmax<T>) into scratch.
  for_each_row<T>(x, x.strides, axis, [&](const RowPlan&, int64_t, const T* xr, size_t n) {
    if (n == 0) return;
    T* probs = thread_scratch<T>(n, 3);  // slots 0-2: the gather tile and softmax's long rows
    softmax_row_default<T>(xr, probs, static_cast<int64_t>(n));
    if (rounds_to_one(static_cast<double>(sm.max(probs, n)), dtype)) count.fetch_add(1, std::memory_order_relaxed);
  });
  return rows == 0 ? std::numeric_limits<double>::quiet_NaN() : static_cast<double>(count.load()) / double(rows);
}

}  // namespace op
}  // namespace

// The float and double specializations that the public header declares (its primary templates
// static_assert for any other element type).
#define LOGITKIT_SPECIALIZE(T)                                                                           \
  template <>                                                                                            \
  void entropy<T>(InputView<T> x, ArrayView<T> out, int axis, const EntropyOptions& options) {          \
    op::entropy<T>(x, out, axis, options);                                                               \
  }                                                                                                      \
  template <>                                                                                            \
  double collapse_fraction<T>(ArrayView<const T> x, int axis, CollapseDtype dtype) {                     \
    return op::collapse_fraction<T>(x, axis, dtype);                                                     \
  }
LOGITKIT_SPECIALIZE(float)
LOGITKIT_SPECIALIZE(double)
#undef LOGITKIT_SPECIALIZE

}  // namespace logitkit
