// cross_entropy through the C++ API on caller buffers, on every ISA, against the closed form in
// double computed here: the per-row loss with class weights and label smoothing, the weighted
// mean, the gradient (also over the logits in place and with the class axis first), and errors.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using lktest::contiguous;
using logitkit::CrossEntropyOptions;
using logitkit::LossGrad;
using logitkit::LossOptions;
using logitkit::LossWeights;
using logitkit::Reduction;

class CrossEntropy : public lktest::IsaTest {};

// Row r's loss, weight and gradient (scaled by s) in double.
void reference_row(const double* x, int64_t c, int64_t t, const double* w, double ls, double s, double& loss,
                   double& weight, double* g) {
  double m = -INFINITY;
  for (int64_t k = 0; k < c; ++k) m = std::max(m, x[k]);
  double sum = 0, wsum = 0, smooth = 0;
  for (int64_t k = 0; k < c; ++k) sum += std::exp(x[k] - m);
  const double lse = m + std::log(sum);
  for (int64_t k = 0; k < c; ++k) {
    const double wk = w ? w[k] : 1.0;
    wsum += wk;
    smooth += wk * (lse - x[k]);
  }
  const double wt = w ? w[t] : 1.0;
  loss = (1 - ls) * wt * (lse - x[t]) + ls / double(c) * smooth;
  weight = wt;
  for (int64_t k = 0; k < c; ++k) {
    const double p = std::exp(x[k] - lse), wk = w ? w[k] : 1.0;
    g[k] = s * (((1 - ls) * wt + ls / double(c) * wsum) * p - (k == t ? (1 - ls) * wt : 0.0) - ls / double(c) * wk);
  }
}

TEST_P(CrossEntropy, MatchesClosedForm) {
  const int64_t n = 23, c = 37;
  std::mt19937 rng(5);
  std::normal_distribution<double> normal;
  std::vector<double> x(static_cast<size_t>(n * c)), w(static_cast<size_t>(c));
  for (double& v : x) v = 3 * normal(rng);
  for (int64_t k = 0; k < c; ++k) w[size_t(k)] = 0.5 + double(k % 3);
  std::vector<int64_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = i % 7 == 2 ? -100 : (i * 5) % c;
  for (double ls : {0.0, 0.25}) {
    for (bool weighted : {false, true}) {
      double loss_sum = 0, weight_sum = 0;
      std::vector<double> g_ref(static_cast<size_t>(n * c), 0.0), row(static_cast<size_t>(c));
      for (int64_t i = 0; i < n; ++i) {
        if (t[size_t(i)] == -100) continue;
        double l, wt;
        reference_row(&x[size_t(i * c)], c, t[size_t(i)], weighted ? w.data() : nullptr, ls, 1.0, l, wt,
                      &g_ref[size_t(i * c)]);
        loss_sum += l;
        weight_sum += wt;
      }
      LossOptions o;  // mean
      CrossEntropyOptions ce;
      ce.label_smoothing = ls;
      LossWeights<double> lw;
      if (weighted) lw.weight = contiguous<const double>(w.data(), {c});
      std::vector<double> grad(static_cast<size_t>(n * c), 9.0);
      LossGrad<double> g;
      g.grad = contiguous<double>(grad.data(), {n, c});
      const double got = logitkit::cross_entropy<double>(contiguous<const double>(x.data(), {n, c}),
                                                         contiguous<const int64_t>(t.data(), {n}), o, ce, lw, {}, g);
      EXPECT_NEAR(got, loss_sum / weight_sum, 1e-13 * std::abs(loss_sum / weight_sum));
      for (size_t e = 0; e < grad.size(); ++e) ASSERT_NEAR(grad[e], g_ref[e] / weight_sum, 1e-15) << e;
    }
  }
}

TEST_P(CrossEntropy, InPlaceFloatAndErrors) {
  const int64_t n = 5, c = 300;
  std::vector<float> x(static_cast<size_t>(n * c));
  for (size_t e = 0; e < x.size(); ++e) x[e] = float(std::sin(double(e)) * 4);
  std::vector<int32_t> t = {3, 299, 0, -100, 150};
  std::vector<double> xd(x.begin(), x.end()), g_ref(static_cast<size_t>(n * c), 0.0);
  double loss_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (t[size_t(i)] < 0) continue;
    double l, wt;
    reference_row(&xd[size_t(i * c)], c, t[size_t(i)], nullptr, 0.0, 1.0, l, wt, &g_ref[size_t(i * c)]);
    loss_sum += l;
  }
  LossOptions o;
  o.reduction = Reduction::kSum;
  LossGrad<float> g;
  g.grad = contiguous<float>(x.data(), {n, c});  // over the logits
  const double got = logitkit::cross_entropy<float>(contiguous<const float>(x.data(), {n, c}),
                                                    contiguous<const int32_t>(t.data(), {n}), o, {}, {}, {}, g);
  EXPECT_NEAR(got, loss_sum, 1e-5 * loss_sum);
  for (size_t e = 0; e < x.size(); ++e) ASSERT_NEAR(x[e], g_ref[e], 1e-6) << e;
  auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const logitkit::Error& e) {
      return e.what();
    }
    return "no error";
  };
  CrossEntropyOptions bad_ls;
  bad_ls.label_smoothing = 1.5;
  EXPECT_NE(message([&] {
              logitkit::cross_entropy<float>(contiguous<const float>(x.data(), {n, c}),
                                             contiguous<const int32_t>(t.data(), {n}), {}, bad_ls);
            }).find("label_smoothing"),
            std::string::npos);
  t[1] = 300;
  EXPECT_NE(message([&] {
              logitkit::cross_entropy<float>(contiguous<const float>(x.data(), {n, c}),
                                             contiguous<const int32_t>(t.data(), {n}));
            }).find("target: class index 300 (row 1)"),
            std::string::npos);
}

// Soft targets with softcap: loss_r = -sum_k y_k log softmax(cap tanh(x / cap))_k, gradient
// (p_k sum y - y_k) (1 - tanh^2); and the extras (lse, predicted, accuracy needs class indices).
TEST_P(CrossEntropy, SoftTargetsSoftcapAndExtras) {
  const int64_t n = 9, c = 21;
  const double cap = 4.0;
  std::mt19937 rng(8);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform;
  std::vector<double> x(static_cast<size_t>(n * c)), y(x.size());
  for (double& v : x) v = 5 * normal(rng);
  for (int64_t i = 0; i < n; ++i) {
    double total = 0;
    for (int64_t k = 0; k < c; ++k) total += y[size_t(i * c + k)] = k % 4 == 1 ? 0.0 : uniform(rng);
    for (int64_t k = 0; k < c; ++k) y[size_t(i * c + k)] /= total;
  }
  std::vector<double> loss_ref(static_cast<size_t>(n)), lse_ref(static_cast<size_t>(n)), g_ref(x.size());
  std::vector<int64_t> argmax(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double* xr = &x[size_t(i * c)];
    std::vector<double> z(static_cast<size_t>(c));
    double m = -INFINITY;
    for (int64_t k = 0; k < c; ++k) {
      z[size_t(k)] = cap * std::tanh(xr[k] / cap);
      m = std::max(m, z[size_t(k)]);
      if (xr[k] > xr[argmax[size_t(i)]]) argmax[size_t(i)] = k;
    }
    double sum = 0;
    for (double v : z) sum += std::exp(v - m);
    const double lse = m + std::log(sum);
    lse_ref[size_t(i)] = lse;
    double l = 0;
    for (int64_t k = 0; k < c; ++k) {
      const double yk = y[size_t(i * c + k)], tk = std::tanh(xr[k] / cap);
      l += yk * (lse - z[size_t(k)]);
      g_ref[size_t(i * c + k)] = (std::exp(z[size_t(k)] - lse) - yk) * (1 - tk * tk);
    }
    loss_ref[size_t(i)] = l;
  }
  LossOptions o;
  o.reduction = Reduction::kNone;
  CrossEntropyOptions ce;
  ce.softcap = cap;
  std::vector<double> loss(static_cast<size_t>(n)), lse(static_cast<size_t>(n)), grad(x.size());
  std::vector<int64_t> predicted(static_cast<size_t>(n));
  LossGrad<double> g;
  g.grad = contiguous<double>(grad.data(), {n, c});
  logitkit::CrossEntropyExtras<double> extras;
  extras.lse = contiguous<double>(lse.data(), {n});
  extras.predicted = contiguous<int64_t>(predicted.data(), {n});
  logitkit::cross_entropy<double>(contiguous<const double>(x.data(), {n, c}), contiguous<const double>(y.data(), {n, c}),
                                  o, ce, {}, contiguous<double>(loss.data(), {n}), g, extras);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_NEAR(loss[size_t(i)], loss_ref[size_t(i)], 1e-13 * std::abs(loss_ref[size_t(i)]) + 1e-14);
    EXPECT_NEAR(lse[size_t(i)], lse_ref[size_t(i)], 1e-13 * std::abs(lse_ref[size_t(i)]));
    EXPECT_EQ(predicted[size_t(i)], argmax[size_t(i)]);
  }
  for (size_t e = 0; e < grad.size(); ++e) ASSERT_NEAR(grad[e], g_ref[e], 1e-14) << e;
  double accuracy = 0;
  logitkit::CrossEntropyExtras<double> with_accuracy;
  with_accuracy.accuracy = &accuracy;
  EXPECT_THROW(logitkit::cross_entropy<double>(contiguous<const double>(x.data(), {n, c}),
                                               contiguous<const double>(y.data(), {n, c}), {}, {}, {}, {}, {},
                                               with_accuracy),
               logitkit::Error);
  y[5] = NAN;
  EXPECT_THROW(logitkit::cross_entropy<double>(contiguous<const double>(x.data(), {n, c}),
                                               contiguous<const double>(y.data(), {n, c})),
               logitkit::Error);
}

LKTEST_FOR_EACH_ISA(CrossEntropy);

}  // namespace
