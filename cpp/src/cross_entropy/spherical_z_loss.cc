// spherical_z_loss through class_index_loss (runtime/loss_support.h) with the cross_entropy
// slot's kernels: the row mean (shifted_dot at 0), the centred square sum, and the gradient as
// cross_entropy's affine gradient row alpha x - gamma - delta [c == t], since
// d z_t / d x_c = ([c == t] - 1/C - z_t z_c / C) / std is affine in x_c. Memory-bound: three
// reads of a row (two from L2 for rows that fit) and one write.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "logitkit/error.h"
#include "logitkit/spherical_z_loss.h"
#include "cross_entropy/cross_entropy_kernels.h"
#include "runtime/kernel_table.h"
#include "runtime/loss_support.h"
#include "softmax/softmax_kernels.h"

namespace logitkit {
namespace {

double softplus_over_a(double u, double a) { return (std::max(u, 0.0) + std::log1p(std::exp(-std::abs(u)))) / a; }
double sigmoid(double u) { return u >= 0.0 ? 1.0 / (1.0 + std::exp(-u)) : std::exp(u) / (1.0 + std::exp(u)); }

// A finite row whose sums overflow T (|x| near T's max): the row scaled by 1 / max |x| in double,
// loss and gradient by the definition (z-scores do not change with the scale). Rare: scalar.
template <class T>
double huge_row(const T* x, size_t n, size_t t, T* g, double kk, const SphericalZLossOptions& z) {
  double magnitude = 0.0;
  for (size_t i = 0; i < n; ++i) magnitude = std::max(magnitude, std::abs(static_cast<double>(x[i])));
  const double s = 1.0 / magnitude, classes = static_cast<double>(n);
  double mu = 0.0, var = 0.0;
  for (size_t i = 0; i < n; ++i) mu += static_cast<double>(x[i]) * s;
  mu /= classes;
  for (size_t i = 0; i < n; ++i) var += (static_cast<double>(x[i]) * s - mu) * (static_cast<double>(x[i]) * s - mu);
  const double sd = std::sqrt(var / classes);  // of the scaled row; the row's is sd * magnitude
  const double z_t = (static_cast<double>(x[t]) * s - mu) / sd;
  const double u = z.a * (z.b - z_t);
  if (g) {
    const double kz = -kk * sigmoid(u) / (sd * magnitude);
    std::vector<double> zc(n);
    for (size_t i = 0; i < n; ++i) zc[i] = (static_cast<double>(x[i]) * s - mu) / sd;  // before g overwrites x
    for (size_t i = 0; i < n; ++i)
      g[i] = static_cast<T>(kz * ((i == t ? 1.0 : 0.0) - 1.0 / classes - z_t * zc[i] / classes));
  }
  return softplus_over_a(u, z.a);
}

template <class T, class Index>
double spherical_z_impl(ArrayView<const T> x, ArrayView<const Index> target, const LossOptions& options,
                        const SphericalZLossOptions& z, const LossWeights<T>& weights, ArrayView<T> loss,
                        const LossGrad<T>& grad) {
  if (!(z.a > 0.0) || !std::isfinite(z.a))
    throw Error(Error::Kind::kInvalidArgument, "a", "must be a finite number > 0, got " + shortest_repr(z.a));
  if (!std::isfinite(z.b)) throw Error(Error::Kind::kInvalidArgument, "b", "must be finite, got " + shortest_repr(z.b));
  const CrossEntropyKernels<T>& k = kernels().cross_entropy.get<T>();
  const SoftmaxKernels<T>& sk = kernels().softmax.get<T>();
  return class_index_loss<T, Index>(
      x, "logits", target, options, weights, loss, grad, RowPolicy{},
      [&](const T* xr, const T*, size_t t, T* g, double kk, const RowBatch& b) -> double {
        const size_t n = static_cast<size_t>(b.n);
        const double classes = static_cast<double>(n);
        const double mu = k.shifted_dot(xr, nullptr, n, T(0)) / classes;
        const double sigma = std::sqrt(k.centered_square_sum(xr, n, static_cast<T>(mu)) / classes);
        if (!(std::isfinite(mu) && std::isfinite(sigma))) {
          const double magnitude = static_cast<double>(sk.magnitude(xr, n));
          if (std::isfinite(magnitude)) return huge_row(xr, n, t, g, kk, z);  // sums overflowed T
        }
        const double z_t = (static_cast<double>(xr[t]) - mu) / sigma;
        const double u = z.a * (z.b - z_t);
        if (g) {
          // d loss / d z_t = -sigmoid(u); times d z_t / d x_c
          const double kz = -kk * sigmoid(u);  // d (k loss) / d z_t
          GradCoeffs<T> gc{};
          gc.alpha = static_cast<T>(-kz * z_t / (sigma * sigma * classes));
          gc.gamma = static_cast<T>(kz / (sigma * classes) - kz * z_t * mu / (sigma * sigma * classes));
          gc.delta = static_cast<T>(-kz / sigma);
          gc.index = t;
          k.grad(xr, nullptr, nullptr, nullptr, g, n, gc, false);
        }
        return softplus_over_a(u, z.a);
      });
}

}  // namespace

#define LOGITKIT_SPECIALIZE(T, Index)                                                                            \
  template <>                                                                                                    \
  double spherical_z_loss<T, Index>(InputView<T> logits, ArrayView<const Index> target, const LossOptions& options, \
                                    const SphericalZLossOptions& z, const LossWeights<T>& weights, ArrayView<T> loss, \
                                    const LossGrad<T>& grad) {                                                   \
    return spherical_z_impl<T, Index>(logits, target, options, z, weights, loss, grad);                          \
  }
LOGITKIT_SPECIALIZE(float, int32_t)
LOGITKIT_SPECIALIZE(float, int64_t)
LOGITKIT_SPECIALIZE(double, int32_t)
LOGITKIT_SPECIALIZE(double, int64_t)
#undef LOGITKIT_SPECIALIZE

}  // namespace logitkit
