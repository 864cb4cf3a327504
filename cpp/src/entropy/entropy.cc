// entropy and collapse_fraction: operands declared to the row driver (runtime/row_driver.h) and
// the per-row finish in double. Kernels live in entropy_kernels-inl.h.
#include <cmath>
#include <limits>
#include <string>

#include "logitkit/entropy.h"
#include "logitkit/error.h"
#include "runtime/kernel_table.h"
#include "runtime/row_driver.h"
#include "entropy/entropy_kernels.h"
#include "softmax/softmax_kernels.h"

namespace logitkit {
namespace {

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
  RowDriver d(axis);
  const int kX = d.input(x, "x"), kOut = d.output(out, "out", RowExtent::kScalar);
  d.check();
  const T c = inverse_temperature<T>(options.temperature);
  const auto& sm = kernels().softmax.get<T>();
  const auto& k = kernels().entropy.get<T>();
  const size_t n = static_cast<size_t>(d.n());
  d.run([&](const RowBatch& b) {
    for (size_t t = 0; t < b.rows; ++t) {
      const T* xr = b.row<const T>(kX, t);
      const T m = n ? sm.max(xr, n) : T(0);
      EntropySums s{0.0, 0.0, 0.0};
      if (n && std::isfinite(m)) s = k.sums(xr, n, m, c);
      *b.row<T>(kOut, t) = finish_entropy<T>(m, n, s);
    }
  });
}

template <class T>
double collapse_fraction(ArrayView<const T> x, int axis, CollapseDtype dtype) {
  RowDriver d(axis);
  const int kX = d.input(x, "x"), kCollapsed = d.row_values();
  d.check();
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
  const auto& sm = kernels().softmax.get<T>();
  const size_t n = static_cast<size_t>(d.n());
  // By construction the rows where softmax(x) itself puts exactly 1.0 on its max: each row's
  // softmax (default options, so the same algorithm and bits as softmax<T>) into scratch; 1 or 0
  // per row, counted by the driver's ordered sum.
  RowPolicy policy;
  policy.scratch_bytes = n * sizeof(T);
  d.run(
      [&](const RowBatch& b) {
        T* probs = static_cast<T*>(b.scratch);
        for (size_t t = 0; t < b.rows; ++t) {
          bool collapsed = false;
          if (n) {
            softmax_row_default<T>(b.row<const T>(kX, t), probs, static_cast<int64_t>(n));
            collapsed = rounds_to_one(static_cast<double>(sm.max(probs, n)), dtype);
          }
          *b.row<double>(kCollapsed, t) = collapsed ? 1.0 : 0.0;
        }
      },
      policy);
  return d.rows() == 0 ? std::numeric_limits<double>::quiet_NaN() : d.row_value_sum(kCollapsed) / double(d.rows());
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
