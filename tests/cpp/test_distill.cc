// The distillation losses through the C++ API on caller buffers, on every ISA, against closed
// forms in double computed here: distill_loss (forward/reverse KL, JSD, TVD) with temperature and
// T^2, distill_topk_loss against the dense KL of the scattered teacher, and distill_target_loss
// (DKD, NKD) per row; plus the errors that name an argument.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using lktest::contiguous;
using logitkit::Divergence;
using logitkit::DistillOptions;
using logitkit::LossGrad;
using logitkit::LossOptions;
using logitkit::Reduction;

class Distill : public lktest::IsaTest {};

std::vector<double> log_softmax(const double* x, int64_t c, double temperature) {
  double m = -INFINITY;
  for (int64_t k = 0; k < c; ++k) m = std::max(m, x[k] / temperature);
  double s = 0;
  for (int64_t k = 0; k < c; ++k) s += std::exp(x[k] / temperature - m);
  std::vector<double> out(static_cast<size_t>(c));
  for (int64_t k = 0; k < c; ++k) out[size_t(k)] = x[k] / temperature - m - std::log(s);
  return out;
}

// One row's divergence and its gradient with respect to the student's logits (before T^2).
double divergence_row(Divergence kind, const double* s, const double* t, int64_t c, double temperature, double beta,
                      double* g) {
  const auto lp = log_softmax(s, c, temperature), lq = log_softmax(t, c, temperature);
  std::vector<double> u(static_cast<size_t>(c));
  double value = 0, usum = 0;
  for (int64_t k = 0; k < c; ++k) {
    const double p = std::exp(lp[size_t(k)]), q = std::exp(lq[size_t(k)]);
    double term = 0, uk = 0;
    if (kind == Divergence::kForwardKL) {
      term = q * (lq[size_t(k)] - lp[size_t(k)]);
      uk = -q;
    } else if (kind == Divergence::kReverseKL) {
      term = p * (lp[size_t(k)] - lq[size_t(k)]);
      uk = term + p;
    } else if (kind == Divergence::kJSD) {
      const double m = beta * q + (1 - beta) * p, lm = std::log(m);
      const double pt = p * (lp[size_t(k)] - lm);
      term = beta * q * (lq[size_t(k)] - lm) + (1 - beta) * pt;
      uk = (1 - beta) * pt;
    } else {
      term = 0.5 * std::abs(p - q);
      uk = 0.5 * (p > q ? 1.0 : p < q ? -1.0 : 0.0) * p;
    }
    value += term;
    u[size_t(k)] = uk;
    usum += uk;
  }
  for (int64_t k = 0; k < c; ++k) g[k] = (u[size_t(k)] - std::exp(lp[size_t(k)]) * usum) / temperature;
  return value;
}

TEST_P(Distill, DivergencesMatchClosedForm) {
  const int64_t n = 13, c = 29;
  std::mt19937 rng(3);
  std::normal_distribution<double> normal;
  std::vector<double> s(static_cast<size_t>(n * c)), t(s.size());
  for (double& v : s) v = 2 * normal(rng);
  for (double& v : t) v = 2 * normal(rng);
  for (Divergence kind : {Divergence::kForwardKL, Divergence::kReverseKL, Divergence::kJSD, Divergence::kTVD}) {
    for (double temperature : {1.0, 2.5}) {
      DistillOptions o;
      o.divergence = kind;
      o.temperature = temperature;
      o.beta = 0.3;
      double total = 0;
      std::vector<double> g_ref(s.size()), grad(s.size());
      for (int64_t r = 0; r < n; ++r)
        total += divergence_row(kind, &s[size_t(r * c)], &t[size_t(r * c)], c, temperature, 0.3, &g_ref[size_t(r * c)]);
      const double t2 = temperature * temperature;
      LossGrad<double> g;
      g.grad = contiguous<double>(grad.data(), {n, c});
      const double got = logitkit::distill_loss<double>(contiguous<const double>(s.data(), {n, c}),
                                                        contiguous<const double>(t.data(), {n, c}), LossOptions{}, o,
                                                        {}, {}, g);
      EXPECT_NEAR(got, t2 * total / double(n), 1e-13 * std::abs(total)) << int(kind);
      for (size_t e = 0; e < grad.size(); ++e) ASSERT_NEAR(grad[e], t2 * g_ref[e] / double(n), 1e-15) << e;
    }
  }
}

TEST_P(Distill, SparseTeacherAndTargetLosses) {
  const int64_t n = 6, c = 11, k = 3;
  std::mt19937 rng(4);
  std::normal_distribution<double> normal;
  std::vector<double> s(static_cast<size_t>(n * c)), lq(static_cast<size_t>(n * k));
  std::vector<int32_t> ids(lq.size());
  for (double& v : s) v = normal(rng);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < k; ++j) {
      ids[size_t(r * k + j)] = static_cast<int32_t>((r + 4 * j) % c);
      lq[size_t(r * k + j)] = -1.0 - double(j);
    }
  // dense reference: q over the k ids (softmax of lq), KL(q || p)
  std::vector<double> loss(static_cast<size_t>(n)), grad(s.size());
  LossOptions o;
  o.reduction = Reduction::kNone;
  LossGrad<double> g;
  g.grad = contiguous<double>(grad.data(), {n, c});
  logitkit::distill_topk_loss<double, int32_t>(contiguous<const double>(s.data(), {n, c}),
                                               contiguous<const double>(lq.data(), {n, k}),
                                               contiguous<const int32_t>(ids.data(), {n, k}), o, {}, {},
                                               contiguous<double>(loss.data(), {n}), g);
  for (int64_t r = 0; r < n; ++r) {
    const auto lp = log_softmax(&s[size_t(r * c)], c, 1.0);
    double z = 0;
    for (int64_t j = 0; j < k; ++j) z += std::exp(lq[size_t(r * k + j)]);
    double kl = 0;
    std::vector<double> gr(static_cast<size_t>(c));
    for (int64_t i = 0; i < c; ++i) gr[size_t(i)] = std::exp(lp[size_t(i)]);
    for (int64_t j = 0; j < k; ++j) {
      const double q = std::exp(lq[size_t(r * k + j)]) / z;
      const int32_t id = ids[size_t(r * k + j)];
      kl += q * (std::log(q) - lp[size_t(id)]);
      gr[size_t(id)] -= q;
    }
    EXPECT_NEAR(loss[size_t(r)], kl, 1e-13);
    for (int64_t i = 0; i < c; ++i) ASSERT_NEAR(grad[size_t(r * c + i)], gr[size_t(i)], 1e-15);
  }
  ids[4] = ids[3];  // a repeated id in row 1
  std::fill(grad.begin(), grad.end(), 7.0);
  try {
    logitkit::distill_topk_loss<double, int32_t>(contiguous<const double>(s.data(), {n, c}),
                                                 contiguous<const double>(lq.data(), {n, k}),
                                                 contiguous<const int32_t>(ids.data(), {n, k}), o, {}, {},
                                                 contiguous<double>(loss.data(), {n}), g);
    FAIL() << "no error";
  } catch (const logitkit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("teacher_ids"), std::string::npos) << e.what();
  }
  for (double v : grad) ASSERT_EQ(v, 7.0);  // checked before any write

  // DKD with alpha = 1, beta = 1 and NKD at T = 1 equal closed forms of their definitions
  std::vector<double> t(s.size());
  for (double& v : t) v = normal(rng);
  std::vector<int64_t> target(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) target[size_t(r)] = (3 * r) % c;
  for (auto kind : {logitkit::TargetDistill::kDecoupled, logitkit::TargetDistill::kNormalized}) {
    logitkit::TargetDistillOptions to;
    to.kind = kind;
    to.temperature = kind == logitkit::TargetDistill::kDecoupled ? 2.0 : 1.0;
    to.beta = 1.0;
    to.gamma = 1.0;
    logitkit::distill_target_loss<double, int64_t>(contiguous<const double>(s.data(), {n, c}),
                                                   contiguous<const double>(t.data(), {n, c}),
                                                   contiguous<const int64_t>(target.data(), {n}), o, to, {},
                                                   contiguous<double>(loss.data(), {n}));
    for (int64_t r = 0; r < n; ++r) {
      const auto lp = log_softmax(&s[size_t(r * c)], c, to.temperature);
      const auto lqq = log_softmax(&t[size_t(r * c)], c, to.temperature);
      const size_t tt = static_cast<size_t>(target[size_t(r)]);
      const double p_t = std::exp(lp[tt]), q_t = std::exp(lqq[tt]);
      double nckd = 0, cross = 0;
      for (int64_t i = 0; i < c; ++i) {
        if (size_t(i) == tt) continue;
        const double lph = lp[size_t(i)] - std::log1p(-p_t), lqh = lqq[size_t(i)] - std::log1p(-q_t);
        nckd += std::exp(lqh) * (lqh - lph);
        cross -= std::exp(lqh) * lph;
      }
      double expected;
      if (kind == logitkit::TargetDistill::kDecoupled) {
        const double tckd = q_t * std::log(q_t / p_t) + (1 - q_t) * std::log((1 - q_t) / (1 - p_t));
        expected = 4.0 * (tckd + nckd);
      } else {
        expected = -q_t * std::log(p_t) + cross;
      }
      EXPECT_NEAR(loss[size_t(r)], expected, 1e-12 * std::abs(expected)) << int(kind) << " row " << r;
    }
  }
}

LKTEST_FOR_EACH_ISA(Distill);

}  // namespace
