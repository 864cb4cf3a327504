// nll_loss through the C++ API on caller buffers, on every ISA, against the closed form computed
// here in double: loss, weighted mean, per-row losses, the one-hot gradient (also written over the
// log-probabilities in place and into a strided view), int32 targets, and argument errors.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using lktest::contiguous;
using lktest::make_view;
using logitkit::LossGrad;
using logitkit::LossOptions;
using logitkit::LossWeights;
using logitkit::Reduction;

class NllLoss : public lktest::IsaTest {};

struct Reference {
  double sum = 0, weight = 0;
  std::vector<double> rows, w;  // per-row loss and weight
};

template <class T, class I>
Reference reference(const std::vector<T>& lp, const std::vector<I>& t, const std::vector<T>& weight, int64_t n,
                    int64_t c, int64_t ignore) {
  Reference r;
  for (int64_t i = 0; i < n; ++i) {
    double w = 0, l = 0;
    if (t[size_t(i)] != ignore) {
      w = weight.empty() ? 1.0 : double(weight[size_t(t[size_t(i)])]);
      l = -w * double(lp[size_t(i * c + t[size_t(i)])]);
    }
    r.rows.push_back(l);
    r.w.push_back(w);
    r.sum += l;
    r.weight += w;
  }
  return r;
}

template <class T, class I>
void check_all_reductions(int64_t n, int64_t c, bool weighted) {
  std::mt19937 rng(11);
  std::normal_distribution<double> normal;
  std::vector<T> lp(static_cast<size_t>(n * c));
  for (T& v : lp) v = T(-std::abs(normal(rng)) * 3);
  std::vector<I> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = I(i % 5 == 3 ? -100 : (i * 7) % c);
  std::vector<T> weight;
  if (weighted)
    for (int64_t k = 0; k < c; ++k) weight.push_back(T(0.25 + 0.5 * double(k % 4)));
  const Reference ref = reference(lp, t, weight, n, c, -100);
  const double tol = sizeof(T) == 4 ? 1e-6 : 1e-14;
  LossWeights<T> lw;
  if (weighted) lw.weight = contiguous<const T>(weight.data(), {c});
  for (Reduction red : {Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
    LossOptions o;
    o.reduction = red;
    std::vector<T> rows(static_cast<size_t>(n), T(-1)), grad(static_cast<size_t>(n * c), T(7));
    LossGrad<T> g;
    g.grad = contiguous<T>(grad.data(), {n, c});
    g.grad_output = 2.0;
    const double got = logitkit::nll_loss<T>(contiguous<const T>(lp.data(), {n, c}),
                                             contiguous<const I>(t.data(), {n}), o, lw,
                                             red == Reduction::kNone ? contiguous<T>(rows.data(), {n})
                                                                     : logitkit::ArrayView<T>{},
                                             g);
    const double expected = red == Reduction::kMean ? ref.sum / ref.weight : ref.sum;
    EXPECT_NEAR(got, expected, tol * (1 + std::abs(expected)));
    const double scale = red == Reduction::kMean ? 2.0 / ref.weight : 2.0;
    for (int64_t i = 0; i < n; ++i) {
      if (red == Reduction::kNone) {
        EXPECT_NEAR(rows[size_t(i)], ref.rows[size_t(i)], tol * (1 + std::abs(ref.rows[size_t(i)])));
      }
      for (int64_t k = 0; k < c; ++k) {
        const double g_ref = t[size_t(i)] == k ? -ref.w[size_t(i)] * scale : 0.0;
        ASSERT_NEAR(grad[size_t(i * c + k)], g_ref, tol * std::abs(g_ref)) << i << "," << k;
      }
    }
  }
}

TEST_P(NllLoss, MatchesClosedForm) {
  for (bool weighted : {false, true}) {
    check_all_reductions<float, int64_t>(37, 19, weighted);
    check_all_reductions<double, int32_t>(37, 19, weighted);
    check_all_reductions<double, int64_t>(300, 1000, weighted);
    check_all_reductions<float, int32_t>(1, 1, weighted);
  }
}

TEST_P(NllLoss, GradientInPlaceAndStrided) {
  const int64_t n = 9, c = 6;
  std::vector<double> lp(static_cast<size_t>(n * c));
  for (size_t i = 0; i < lp.size(); ++i) lp[i] = -0.1 * double(i % 13) - 0.05;
  std::vector<int64_t> t = {0, 5, -100, 3, 2, 2, 1, 4, 0};
  const Reference ref = reference(lp, t, {}, n, c, -100);
  LossOptions o;
  o.reduction = Reduction::kSum;
  // in place: the gradient over the log-probabilities
  std::vector<double> buf = lp;
  LossGrad<double> g;
  g.grad = contiguous<double>(buf.data(), {n, c});
  const double loss = logitkit::nll_loss<double>(contiguous<const double>(buf.data(), {n, c}),
                                                 contiguous<const int64_t>(t.data(), {n}), o, {}, {}, g);
  EXPECT_NEAR(loss, ref.sum, 1e-14);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k) EXPECT_EQ(buf[size_t(i * c + k)], t[size_t(i)] == k ? -1.0 : 0.0);
  // the class axis first, a strided gradient
  std::vector<double> lpt(static_cast<size_t>(n * c)), gt(static_cast<size_t>(2 * n * c), 9.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k) lpt[size_t(k * n + i)] = lp[size_t(i * c + k)];
  o.axis = 0;
  LossGrad<double> g2;
  g2.grad = make_view<double>(gt.data(), {c, n}, {2 * n, 2});
  EXPECT_NEAR(logitkit::nll_loss<double>(contiguous<const double>(lpt.data(), {c, n}),
                                         contiguous<const int64_t>(t.data(), {n}), o, {}, {}, g2),
              ref.sum, 1e-14);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k) {
      EXPECT_EQ(gt[size_t(k * 2 * n + 2 * i)], t[size_t(i)] == k ? -1.0 : 0.0);
      EXPECT_EQ(gt[size_t(k * 2 * n + 2 * i + 1)], 9.0);  // untouched between the strided elements
    }
}

TEST_P(NllLoss, ErrorsNameTheArgument) {
  std::vector<float> lp(12, -1.f);
  std::vector<int64_t> t = {0, 4, 1};
  auto message = [&](auto&& f) -> std::string {
    try {
      f();
    } catch (const logitkit::Error& e) {
      return e.what();
    }
    return "no error";
  };
  const auto lpv = contiguous<const float>(lp.data(), {3, 4});
  EXPECT_NE(message([&] { logitkit::nll_loss<float>(lpv, contiguous<const int64_t>(t.data(), {3})); }).find("target: class index 4 (row 1)"),
            std::string::npos);
  EXPECT_NE(message([&] { logitkit::nll_loss<float>(lpv, contiguous<const int64_t>(t.data(), {2})); }).find("target"),
            std::string::npos);
  std::vector<float> w(3, 1.f);
  t[1] = 2;
  LossWeights<float> lw;
  lw.weight = contiguous<const float>(w.data(), {3});
  EXPECT_NE(message([&] { logitkit::nll_loss<float>(lpv, contiguous<const int64_t>(t.data(), {3}), {}, lw); }).find("weight"),
            std::string::npos);
  LossOptions none;
  none.reduction = Reduction::kNone;
  EXPECT_NE(message([&] { logitkit::nll_loss<float>(lpv, contiguous<const int64_t>(t.data(), {3}), none); }).find("loss"),
            std::string::npos);
}

LKTEST_FOR_EACH_ISA(NllLoss);

}  // namespace
