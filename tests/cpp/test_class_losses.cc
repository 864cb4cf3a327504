// The class-index losses with their own row functions, through the C++ API on caller buffers, on
// every ISA, against closed forms in double computed here: stablemax_cross_entropy,
// fenchel_young_loss (sparsemax: closed-form sparsemax by sorting) and spherical_z_loss; and the
// cross_entropy forms (focal, poly1, comp-sum) with a target margin. Gradients against central
// differences of the reference loss.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "test_util.h"

namespace {

using lktest::contiguous;
using logitkit::LossGrad;
using logitkit::LossOptions;
using logitkit::Reduction;

class ClassLosses : public lktest::IsaTest {};

double stablemax_nll(const double* x, int64_t c, int64_t t) {
  auto s = [](double v) { return v >= 0 ? v + 1 : 1 / (1 - v); };
  double sum = 0;
  for (int64_t k = 0; k < c; ++k) sum += s(x[k]);
  return -std::log(s(x[t]) / sum);
}

double sparsemax_loss(const double* x, int64_t c, int64_t t) {
  std::vector<double> z(x, x + c);
  std::sort(z.begin(), z.end(), std::greater<double>());
  double cum = 0, tau = 0;
  for (int64_t k = 0; k < c; ++k) {
    cum += z[size_t(k)];
    if (1 + double(k + 1) * z[size_t(k)] > cum) tau = (cum - 1) / double(k + 1);
  }
  double pz = 0, pp = 0;
  for (int64_t k = 0; k < c; ++k) {
    const double p = std::max(x[k] - tau, 0.0);
    pz += p * x[k];
    pp += p * p;
  }
  return pz - x[t] + 0.5 * (1 - pp);
}

double z_loss(const double* x, int64_t c, int64_t t, double a, double b) {
  double mu = 0, var = 0;
  for (int64_t k = 0; k < c; ++k) mu += x[k] / double(c);
  for (int64_t k = 0; k < c; ++k) var += (x[k] - mu) * (x[k] - mu) / double(c);
  const double u = a * (b - (x[t] - mu) / std::sqrt(var));
  return (std::max(u, 0.0) + std::log1p(std::exp(-std::abs(u)))) / a;
}

double focal(const double* x, int64_t c, int64_t t, double gamma, double margin) {
  std::vector<double> y(x, x + c);
  y[size_t(t)] -= margin;
  double m = *std::max_element(y.begin(), y.end()), s = 0;
  for (double v : y) s += std::exp(v - m);
  const double lp = y[size_t(t)] - m - std::log(s);
  return -std::pow(1 - std::exp(lp), gamma) * lp;
}

using RowLoss = std::function<double(const double*, int64_t, int64_t)>;
using Call = std::function<double(const double* x, const int64_t* t, double* loss, double* grad, int64_t n, int64_t c)>;

void check(const RowLoss& ref, const Call& call, double tol) {
  const int64_t n = 7, c = 9;
  std::mt19937 rng(11);
  std::normal_distribution<double> normal;
  std::vector<double> x(static_cast<size_t>(n * c)), loss(static_cast<size_t>(n)), grad(x.size());
  for (double& v : x) v = 1.5 * normal(rng);
  std::vector<int64_t> t(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) t[size_t(r)] = (2 * r + 1) % c;
  call(x.data(), t.data(), loss.data(), grad.data(), n, c);
  for (int64_t r = 0; r < n; ++r) {
    double* row = &x[size_t(r * c)];
    EXPECT_NEAR(loss[size_t(r)], ref(row, c, t[size_t(r)]), tol);
    for (int64_t k = 0; k < c; ++k) {  // central differences of the reference
      const double h = 1e-6, keep = row[k];
      row[k] = keep + h;
      const double up = ref(row, c, t[size_t(r)]);
      row[k] = keep - h;
      const double down = ref(row, c, t[size_t(r)]);
      row[k] = keep;
      EXPECT_NEAR(grad[size_t(r * c + k)], (up - down) / (2 * h), 1e-6) << "row " << r << " class " << k;
    }
  }
}

template <class F>
Call with_none(F f) {
  return [f](const double* x, const int64_t* t, double* loss, double* grad, int64_t n, int64_t c) {
    LossOptions o;
    o.reduction = Reduction::kNone;
    LossGrad<double> g;
    g.grad = contiguous<double>(grad, {n, c});
    return f(contiguous<const double>(x, {n, c}), contiguous<const int64_t>(t, {n}), o, contiguous<double>(loss, {n}), g);
  };
}

TEST_P(ClassLosses, MatchClosedFormsAndDifferences) {
  check(stablemax_nll, with_none([](auto x, auto t, auto o, auto loss, auto g) {
          return logitkit::stablemax_cross_entropy<double, int64_t>(x, t, o, {}, {}, loss, g);
        }), 1e-13);
  check(sparsemax_loss, with_none([](auto x, auto t, auto o, auto loss, auto g) {
          return logitkit::fenchel_young_loss<double, int64_t>(logitkit::FenchelYoung::kSparsemax, x, t, o, {}, {},
                                                               loss, g);
        }), 1e-13);
  check([](const double* x, int64_t c, int64_t t) { return z_loss(x, c, t, 0.5, 2.0); },
        with_none([](auto x, auto t, auto o, auto loss, auto g) {
          logitkit::SphericalZLossOptions z;
          z.a = 0.5;
          z.b = 2.0;
          return logitkit::spherical_z_loss<double, int64_t>(x, t, o, z, {}, loss, g);
        }), 1e-13);
  check([](const double* x, int64_t c, int64_t t) { return focal(x, c, t, 2.0, 0.3); },
        with_none([](auto x, auto t, auto o, auto loss, auto g) {
          logitkit::CrossEntropyOptions ce;
          ce.form = logitkit::CrossEntropyOptions::Form::kFocal;
          ce.form_param = 2.0;
          ce.target_margin = 0.3;
          return logitkit::cross_entropy<double, int64_t>(x, t, o, ce, {}, loss, g);
        }), 1e-13);
}

LKTEST_FOR_EACH_ISA(ClassLosses);

}  // namespace
