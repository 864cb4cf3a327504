// sparsemax ops of the C++ API: sparsemax, entmax-1.5, entmax-bisect and their backward passes (VJPs).
#pragma once
#include <cstdint>
#include <type_traits>
#include <cstddef>

#include "logitkit/export.h"
#include "logitkit/loss.h"
#include "logitkit/view.h"

namespace logitkit {

struct SparsemaxOptions {
  double temperature = 1.0;  // op(x / temperature); must be finite and > 0
};

struct EntmaxBisectOptions {
  double alpha = 1.5;        // >= 1; 1 is softmax, 1.5 entmax-1.5, 2 sparsemax
  int n_iter = 50;           // bisection steps (>= 1), as the entmax package
  double temperature = 1.0;  // entmax(x / temperature); must be finite and > 0
};

// Exact sparsemax (Martins & Astudillo 2016): the Euclidean projection of x / temperature onto
// the probability simplex along `axis`, y = [x/T - tau]_+. Exactly 0 off the support.
// Special values: a NaN in the row, or a row of only -inf, gives NaN; a row with +inf entries
// (x/T overflowing included) puts equal mass on them; -inf entries get 0.
// x and y have the same shape, any strides; y may alias x exactly (in place).
// Like every op, a template defined for T = float and double only (see softmax.h).
template <class T>
void sparsemax(InputView<T> /*x*/, ArrayView<T> /*y*/, int /*axis*/, const SparsemaxOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::sparsemax: T must be float or double");
}
template <> LOGITKIT_API void sparsemax<float>(InputView<float>, ArrayView<float>, int, const SparsemaxOptions&);
template <> LOGITKIT_API void sparsemax<double>(InputView<double>, ArrayView<double>, int, const SparsemaxOptions&);

// Exact entmax-1.5 (Peters, Niculae & Martins 2019) with the entmax package's convention
// y = [x/(2T) - tau]_+^2, sum y = 1. Same special values and layout rules as sparsemax.
template <class T>
void entmax15(InputView<T> /*x*/, ArrayView<T> /*y*/, int /*axis*/, const SparsemaxOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::entmax15: T must be float or double");
}
template <> LOGITKIT_API void entmax15<float>(InputView<float>, ArrayView<float>, int, const SparsemaxOptions&);
template <> LOGITKIT_API void entmax15<double>(InputView<double>, ArrayView<double>, int, const SparsemaxOptions&);

// alpha-entmax by bisection, as entmax.entmax_bisect: y = [(alpha-1) x/T - tau]_+^(1/(alpha-1))
// after n_iter bisection steps on tau, normalized to sum 1. alpha == 1 is softmax.
// Throws logitkit::Error naming alpha (< 1 or not finite) or n_iter (< 1).
template <class T>
void entmax_bisect(InputView<T> /*x*/, ArrayView<T> /*y*/, int /*axis*/, const EntmaxBisectOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::entmax_bisect: T must be float or double");
}
template <> LOGITKIT_API void entmax_bisect<float>(InputView<float>, ArrayView<float>, int, const EntmaxBisectOptions&);
template <> LOGITKIT_API void entmax_bisect<double>(InputView<double>, ArrayView<double>, int,
                                                    const EntmaxBisectOptions&);

// Vector-Jacobian products given the forward output y and the upstream gradient dy (same shape,
// any strides); dx may alias y or dy exactly. With g = [y > 0] (sparsemax), sqrt(y) (entmax-1.5)
// or y^(2-alpha) on y > 0 (entmax-bisect):
//   dx = (g dy - g sum(g dy) / sum(g)) / temperature
// which is the gradient with respect to x of op(x / temperature). NaN in dy propagates as in
// autograd through the entmax package.
template <class T>
void sparsemax_backward(InputView<T> /*y*/, InputView<T> /*dy*/, ArrayView<T> /*dx*/, int /*axis*/,
                        double /*temperature*/ = 1.0) {
  static_assert(detail::kIsElement<T>, "logitkit::sparsemax_backward: T must be float or double");
}
template <> LOGITKIT_API void sparsemax_backward<float>(InputView<float>, InputView<float>, ArrayView<float>, int,
                                                        double);
template <> LOGITKIT_API void sparsemax_backward<double>(InputView<double>, InputView<double>, ArrayView<double>,
                                                         int, double);
template <class T>
void entmax15_backward(InputView<T> /*y*/, InputView<T> /*dy*/, ArrayView<T> /*dx*/, int /*axis*/,
                       double /*temperature*/ = 1.0) {
  static_assert(detail::kIsElement<T>, "logitkit::entmax15_backward: T must be float or double");
}
template <> LOGITKIT_API void entmax15_backward<float>(InputView<float>, InputView<float>, ArrayView<float>, int,
                                                       double);
template <> LOGITKIT_API void entmax15_backward<double>(InputView<double>, InputView<double>, ArrayView<double>, int,
                                                        double);
template <class T>
void entmax_bisect_backward(InputView<T> /*y*/, InputView<T> /*dy*/, ArrayView<T> /*dx*/, int /*axis*/,
                            double /*alpha*/ = 1.5, double /*temperature*/ = 1.0) {
  static_assert(detail::kIsElement<T>, "logitkit::entmax_bisect_backward: T must be float or double");
}
template <> LOGITKIT_API void entmax_bisect_backward<float>(InputView<float>, InputView<float>, ArrayView<float>,
                                                            int, double, double);
template <> LOGITKIT_API void entmax_bisect_backward<double>(InputView<double>, InputView<double>, ArrayView<double>,
                                                             int, double, double);

// Fenchel-Young losses of sparsemax and 1.5-entmax (Blondel, Martins & Niculae) against class
// indices, with z = logits / temperature and p* = sparsemax(z) or entmax15(z):
//   sparsemax_loss_r = <p* - e_t, z> + (1 - ||p*||^2) / 2,
//   entmax15_loss_r  = <p* - e_t, z> + (1 - sum p*^1.5) / 0.75,
// each >= 0 and 0 exactly when p* = e_t; gradient (p* - e_t) / temperature. Class weights,
// ignore_index, sample_weight and the reductions as cross_entropy (PyTorch's weighted "mean").
// Defined for T = float, double and Index = int32_t, int64_t.
enum class FenchelYoung : uint8_t { kSparsemax, kEntmax15 };
template <class T, class Index>
double fenchel_young_loss(FenchelYoung /*kind*/, InputView<T> /*logits*/, ArrayView<const Index> /*target*/,
                          const LossOptions& /*options*/ = {}, const SparsemaxOptions& /*sparsemax*/ = {},
                          const LossWeights<T>& /*weights*/ = {}, ArrayView<T> /*loss*/ = {},
                          const LossGrad<T>& /*grad*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::fenchel_young_loss: T must be float or double");
  static_assert(std::is_same_v<Index, int32_t> || std::is_same_v<Index, int64_t>,
                "logitkit::fenchel_young_loss: target indices must be int32_t or int64_t");
  return 0.0;
}
#define LOGITKIT_DECLARE_FY(T, Index)                                                                          \
  template <>                                                                                                  \
  LOGITKIT_API double fenchel_young_loss<T, Index>(FenchelYoung, InputView<T>, ArrayView<const Index>,        \
                                                   const LossOptions&, const SparsemaxOptions&,               \
                                                   const LossWeights<T>&, ArrayView<T>, const LossGrad<T>&);
LOGITKIT_DECLARE_FY(float, int32_t)
LOGITKIT_DECLARE_FY(float, int64_t)
LOGITKIT_DECLARE_FY(double, int32_t)
LOGITKIT_DECLARE_FY(double, int64_t)
#undef LOGITKIT_DECLARE_FY

}  // namespace logitkit
