// entropy ops of the C++ API: fused Shannon entropy of softmax(logits) and the Softmax Collapse
// fraction ("Grokking at the Edge of Numerical Stability", Prieto et al. 2025).
#pragma once
#include <type_traits>

#include "logitkit/export.h"
#include "logitkit/view.h"

namespace logitkit {

struct EntropyOptions {
  double temperature = 1.0;  // entropy of softmax(logits / temperature); finite and > 0
};

// out = H(softmax(x / temperature)) in nats along `axis`, without forming the probabilities:
// H = log Z - sum(z e^z) / Z with z = (x - max) / temperature. `out` has x's shape without `axis`
// (or with it kept as 1), any strides. A row that is empty, all -inf or contains +inf or NaN gives
// NaN. Rows whose other entries are all exp-underflowed (one-hot) give exactly 0.
// Like every op, a template defined for T = float and double only (see softmax.h).
template <class T>
void entropy(InputView<T> /*x*/, ArrayView<T> /*out*/, int /*axis*/, const EntropyOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::entropy: T must be float or double");
}
template <> LOGITKIT_API void entropy<float>(InputView<float>, ArrayView<float>, int, const EntropyOptions&);
template <> LOGITKIT_API void entropy<double>(InputView<double>, ArrayView<double>, int, const EntropyOptions&);

// The precision in which softmax is taken for collapse_fraction.
enum class CollapseDtype {
  kFloat64,   // x - max, exp and the sum in double (T = double)
  kFloat32,   // in float (T = float)
  kFloat16,   // x rounded to float16 (T = float holding float16 values), float math, result rounded to float16
  kBFloat16,  // likewise for bfloat16
};

// Fraction of the rows of x (along `axis`) whose softmax, computed in `dtype`, gives probability
// exactly 1.0 to the maximum ("Softmax Collapse"): by construction the rows where
// softmax<T>(x) (default options) has a largest entry of exactly 1.0, after rounding to float16 or
// bfloat16 for those dtypes (x then holds values of that dtype in float). softmax's dominant entry
// is correctly rounded (p_max = 1 / (1 + R), R the others' share), so for float32 a row collapses
// when R is below about 2^-25, for float64 2^-54, float16 2^-12, bfloat16 2^-9. Rows with NaN,
// +inf, tied maxima, all -inf, or no entries never collapse. Returns NaN when x has no rows.
// T must be double for kFloat64 and float otherwise (Error naming "dtype"). With no output view, T
// is deduced from x; the overload after the specializations takes a non-const x.
template <class T>
double collapse_fraction(ArrayView<const T> /*x*/, int /*axis*/, CollapseDtype /*dtype*/) {
  static_assert(detail::kIsElement<T>, "logitkit::collapse_fraction: T must be float or double");
  return 0.0;
}
template <> LOGITKIT_API double collapse_fraction<float>(ArrayView<const float>, int, CollapseDtype);
template <> LOGITKIT_API double collapse_fraction<double>(ArrayView<const double>, int, CollapseDtype);
template <class T, std::enable_if_t<!std::is_const_v<T>, int> = 0>
double collapse_fraction(ArrayView<T> x, int axis, CollapseDtype dtype) {
  return collapse_fraction<T>(ArrayView<const T>(x), axis, dtype);
}

}  // namespace logitkit
