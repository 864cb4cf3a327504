// The softmax core of the C++ API: softmax, log_softmax and logsumexp over one axis of an N-D view.
#pragma once
#include <cstddef>

#include "logitkit/export.h"
#include "logitkit/view.h"

namespace logitkit {

// How softmax traverses a row. All four give results within a few ulp of each other.
//  kThreePassReload    range pass; exp(x-max) stored while summing; scale pass. 1 exp/element.
//                      Rows whose every |x|/temperature is at most 64 take exp(x/temperature)
//                      without the max (nothing rounded before the exp: within 3 ulp for float32
//                      at temperature 1); the others add a max pass.
//  kThreePassRecompute range pass; exp summed, nothing stored; exp recomputed when writing. 2 exp.
//                      Unshifted like kThreePassReload for |x|/temperature <= 64.
//  kTwoPass            Dukhan & Ablavatski: exp kept as (mantissa, exponent) so no max pass is
//                      needed; reads x twice and writes y once. 2 exp/element.
//  kOnline             Milakov & Gimelshein running max and rescaled sum in one read pass.
//  kAuto               three_pass_reload while a row fits in L2 (the re-read hits cache),
//                      two_pass beyond it (one fewer trip to memory).
// Outputs larger than the last-level cache are written with non-temporal stores (three_pass_reload
// through a per-thread scratch row; two_pass directly), so memory sees one read of x and one write
// of y. Rows of 2^18 elements or more are split into fixed chunks across threads.
enum class SoftmaxAlgorithm { kAuto, kThreePassReload, kThreePassRecompute, kTwoPass, kOnline };

struct SoftmaxOptions {
  double temperature = 1.0;  // softmax(x / temperature); must be finite and > 0
  SoftmaxAlgorithm algorithm = SoftmaxAlgorithm::kAuto;
};

// Every op below is a template over the element type T, defined by the library for float and
// double (the explicit specializations declared after it); any other T fails to compile with a
// static_assert (its body holds nothing else, hence the unnamed parameters). T is deduced from the
// output view, inputs are InputView<T> (view.h), so softmax(x, y, -1) compiles with x an
// ArrayView<const T> or an ArrayView<T>.

// y = softmax(x / temperature) along `axis` (negative counts from the end).
// x and y must have the same shape; any strides; y may alias x exactly (in place).
// Throws logitkit::Error naming the bad argument.
template <class T>
void softmax(InputView<T> /*x*/, ArrayView<T> /*y*/, int /*axis*/, const SoftmaxOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::softmax: T must be float or double");
}
template <> LOGITKIT_API void softmax<float>(InputView<float>, ArrayView<float>, int, const SoftmaxOptions&);
template <> LOGITKIT_API void softmax<double>(InputView<double>, ArrayView<double>, int, const SoftmaxOptions&);

// y = log_softmax(x / temperature) along `axis`. Uses log1p of the sum without the max term, so
// the dominant entry keeps full relative precision (log_softmax ~ -sum of the others).
template <class T>
void log_softmax(InputView<T> /*x*/, ArrayView<T> /*y*/, int /*axis*/, const SoftmaxOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::log_softmax: T must be float or double");
}
template <> LOGITKIT_API void log_softmax<float>(InputView<float>, ArrayView<float>, int, const SoftmaxOptions&);
template <> LOGITKIT_API void log_softmax<double>(InputView<double>, ArrayView<double>, int, const SoftmaxOptions&);

// out = log(sum(b * exp(x))) along `axis`, SciPy's semantics:
//  - `out` has x's shape without `axis` (or with it kept at size 1);
//  - `b` (optional, data == nullptr for none) has x's shape, any strides (0 for broadcast);
//  - `sign` (optional) receives sign(sum); without it a negative sum gives NaN.
// A row of all -inf gives -inf; +inf gives +inf; NaN propagates.
template <class T>
void logsumexp(InputView<T> /*x*/, ArrayView<T> /*out*/, int /*axis*/, InputView<T> /*b*/ = {},
               ArrayView<T> /*sign*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::logsumexp: T must be float or double");
}
template <> LOGITKIT_API void logsumexp<float>(InputView<float>, ArrayView<float>, int, InputView<float>,
                                               ArrayView<float>);
template <> LOGITKIT_API void logsumexp<double>(InputView<double>, ArrayView<double>, int, InputView<double>,
                                                ArrayView<double>);

// Convenience overloads for a C-contiguous rows x cols matrix, softmax over each row.
LOGITKIT_API void softmax(const float* x, float* y, size_t rows, size_t cols,
                          const SoftmaxOptions& options = {});
LOGITKIT_API void softmax(const double* x, double* y, size_t rows, size_t cols,
                          const SoftmaxOptions& options = {});

}  // namespace logitkit
