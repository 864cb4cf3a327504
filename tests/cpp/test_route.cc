// MoE routing and data movement through the C++ API on caller buffers, on every ISA, against
// references computed here in double from the documented rules: route (softmax/sigmoid scoring,
// renormalisation, scaling, bias for selection, groups, masks, forced experts, NaN and -inf rows,
// ties, float and double, both the fast and the general path), expert_choice, dispatch plans,
// permute/unpermute, the balancing losses against central differences, contrastive_logits, and
// the errors that name an argument.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "logitkit/moe.h"
#include "logitkit/route.h"
#include "test_util.h"

namespace {

using lktest::contiguous;
using logitkit::RouteOptions;
using logitkit::RouteScoring;

class Route : public lktest::IsaTest {};

// The documented rules for one token without forced experts, in double: ids by (class, key, id).
void reference_route(const std::vector<double>& x, size_t k, const RouteOptions& o, const double* bias,
                     const uint8_t* mask, std::vector<int32_t>& ids, std::vector<double>& w) {
  const size_t n = x.size();
  std::vector<double> s(n, 0.0), key(n);
  std::vector<int> cls(n, 2);
  double m = -INFINITY, z = 0;
  for (size_t e = 0; e < n; ++e)
    if ((!mask || mask[e]) && !std::isnan(x[e])) m = std::max(m, x[e]);
  for (size_t e = 0; e < n; ++e) {
    const bool usable = (!mask || mask[e]) && !std::isnan(x[e]);
    if (!usable) continue;
    if (o.scoring == RouteScoring::kSoftmax) {
      s[e] = m == -INFINITY ? 0.0 : std::exp(x[e] - m);
      z += s[e];
    } else if (o.scoring == RouteScoring::kSigmoid) {
      s[e] = 1 / (1 + std::exp(-x[e]));
    } else {
      s[e] = x[e];
    }
  }
  if (o.scoring == RouteScoring::kSoftmax && z > 0)
    for (double& v : s) v /= z;
  const bool from_scores = bias || (o.n_group > 1 && o.group_score == logitkit::GroupScore::kTop2Sum);
  for (size_t e = 0; e < n; ++e) {
    key[e] = from_scores ? s[e] + (bias ? bias[e] : 0.0) : x[e];
    if (std::isnan(x[e]) || std::isnan(key[e])) cls[e] = 1;
    if (mask && !mask[e]) cls[e] = 0;
    if (cls[e] < 2) key[e] = 0;
  }
  const size_t groups = size_t(o.n_group), keep = o.topk_group ? size_t(o.topk_group) : groups;
  if (groups > 1 && keep < groups) {
    const size_t size = n / groups;
    std::vector<double> gk(groups);
    for (size_t g = 0; g < groups; ++g) {
      std::vector<double> v;
      for (size_t e = g * size; e < (g + 1) * size; ++e)
        if (cls[e] == 2) v.push_back(key[e]);
      std::sort(v.rbegin(), v.rend());
      v.push_back(-INFINITY);
      v.push_back(-INFINITY);
      gk[g] = o.group_score == logitkit::GroupScore::kTop2Sum && size > 1 ? v[0] + v[1] : v[0];
    }
    std::vector<size_t> order(groups);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return gk[a] > gk[b]; });
    for (size_t r = keep; r < groups; ++r)
      for (size_t e = order[r] * size; e < (order[r] + 1) * size; ++e)
        if (cls[e] == 2) key[e] = -INFINITY;
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return cls[a] != cls[b] ? cls[a] > cls[b] : key[a] > key[b]; });
  ids.assign(order.begin(), order.begin() + long(k));
  w.assign(k, 0.0);
  double sum = 0;
  for (size_t j = 0; j < k; ++j) {
    const size_t e = size_t(ids[j]);
    if (cls[e] != 0 && !std::isnan(x[e]) && x[e] != -INFINITY) w[j] = s[e];
    sum += w[j];
  }
  for (double& v : w) v = (o.renormalize && sum + o.renormalize_eps != 0 ? v / (sum + o.renormalize_eps) : v) * o.scaling_factor;
}

template <class T>
void check_route(size_t tokens, size_t n, size_t k, const RouteOptions& o, bool with_bias, bool with_mask,
                 uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> grid(-12, 12);
  std::vector<T> x(tokens * n), bias(n);
  for (T& v : x) v = T(grid(rng)) / 4;  // exact ties, no near-ties
  for (T& v : bias) v = T(grid(rng)) / 16;
  std::vector<uint8_t> mask(tokens * n, 1);
  if (with_mask)
    for (size_t i = 0; i < mask.size(); ++i) mask[i] = (rng() % 4) != 0;
  if (tokens > 2) {  // a NaN and a -inf token: the general path
    x[n] = std::nan("");
    x[2 * n] = -INFINITY;
  }
  std::vector<T> w(tokens * k);
  std::vector<int32_t> ids(tokens * k);
  const int64_t T_ = int64_t(tokens), N = int64_t(n), K = int64_t(k);
  logitkit::route<T>(contiguous<const T>(x.data(), {T_, N}), contiguous<T>(w.data(), {T_, K}),
                     contiguous<int32_t>(ids.data(), {T_, K}), K, o,
                     with_bias ? contiguous<const T>(bias.data(), {N}) : logitkit::ArrayView<const T>{},
                     with_mask ? contiguous<const uint8_t>(mask.data(), {T_, N}) : logitkit::ArrayView<const uint8_t>{});
  std::vector<double> bd(bias.begin(), bias.end());
  const double tol = sizeof(T) == 4 ? 2e-6 : 1e-14;
  for (size_t t = 0; t < tokens; ++t) {
    std::vector<double> xr(x.begin() + long(t * n), x.begin() + long((t + 1) * n));
    std::vector<int32_t> rid;
    std::vector<double> rw;
    reference_route(xr, k, o, with_bias ? bd.data() : nullptr, with_mask ? mask.data() + t * n : nullptr, rid, rw);
    for (size_t j = 0; j < k; ++j) {
      ASSERT_EQ(ids[t * k + j], rid[j]) << "token " << t << " slot " << j;
      ASSERT_NEAR(double(w[t * k + j]), rw[j], tol * (1 + std::abs(rw[j]))) << "token " << t << " slot " << j;
    }
  }
}

TEST_P(Route, MatchesTheDocumentedRules) {
  for (auto scoring : {RouteScoring::kSoftmax, RouteScoring::kSigmoid, RouteScoring::kNone}) {
    for (bool renormalize : {false, true}) {
      RouteOptions o;
      o.scoring = scoring;
      o.renormalize = renormalize;
      o.scaling_factor = renormalize ? 2.5 : 1.0;
      for (auto [n, k] : {std::pair<size_t, size_t>{8, 2}, {64, 8}, {60, 4}, {160, 6}, {384, 8}, {33, 33}, {1, 1}}) {
        check_route<float>(40, n, k, o, false, false, n * 7 + k);
        check_route<double>(40, n, k, o, false, true, n * 11 + k);
        check_route<float>(40, n, k, o, true, true, n * 13 + k);
      }
    }
  }
}

// Batches of tokens go through the many-tokens path, whose packed keys (float32 on SIMD layers,
// k >= 4) keep only a key's upper 24 bits next to the id: tokens whose best k + 1 are within a few
// hundred ulps of each other must be routed again one at a time. The ids against the reference
// (keys are the logits, so float32 near-ties order as in double) and the weights' bits against
// the same tokens routed alone.
TEST_P(Route, BatchedNearTiesMatchTheRulesAndSingleTokens) {
  std::mt19937_64 rng(99);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> ulps(-300, 300);
  for (auto [n, k] : {std::pair<size_t, size_t>{64, 8}, {40, 4}, {130, 6}}) {
    const size_t tokens = 37;
    std::vector<float> x(tokens * n);
    for (float& v : x) v = normal(rng) - 4;
    for (size_t t = 0; t < tokens; ++t) {
      const float base = normal(rng);
      for (size_t j = 0; j < k + 2; ++j) {
        int32_t bits;
        std::memcpy(&bits, &base, 4);
        bits += ulps(rng);
        float v;
        std::memcpy(&v, &bits, 4);
        x[t * n + rng() % n] = t % 5 == 0 ? (j % 2 ? -0.0f : 0.0f) : v;  // some tokens: signed zeros
      }
    }
    for (auto scoring : {RouteScoring::kNone, RouteScoring::kSigmoid}) {
      RouteOptions o;
      o.scoring = scoring;
      std::vector<float> w(tokens * k), w1(k);
      std::vector<int32_t> ids(tokens * k), ids1(k);
      const int64_t T_ = int64_t(tokens), N = int64_t(n), K = int64_t(k);
      logitkit::route<float>(contiguous<const float>(x.data(), {T_, N}), contiguous<float>(w.data(), {T_, K}),
                             contiguous<int32_t>(ids.data(), {T_, K}), K, o);
      for (size_t t = 0; t < tokens; ++t) {
        logitkit::route<float>(contiguous<const float>(x.data() + t * n, {1, N}), contiguous<float>(w1.data(), {1, K}),
                               contiguous<int32_t>(ids1.data(), {1, K}), K, o);
        std::vector<double> xr(x.begin() + long(t * n), x.begin() + long((t + 1) * n));
        std::vector<int32_t> rid;
        std::vector<double> rw;
        reference_route(xr, k, o, nullptr, nullptr, rid, rw);
        for (size_t j = 0; j < k; ++j) {
          ASSERT_EQ(ids[t * k + j], rid[j]) << "n " << n << " token " << t << " slot " << j;
          ASSERT_EQ(ids[t * k + j], ids1[j]) << "n " << n << " token " << t << " slot " << j;
          ASSERT_EQ(std::memcmp(&w[t * k + j], &w1[j], 4), 0) << "n " << n << " token " << t << " slot " << j;
        }
      }
    }
  }
}

TEST_P(Route, Groups) {
  for (auto rule : {logitkit::GroupScore::kMax, logitkit::GroupScore::kTop2Sum}) {
    RouteOptions o;
    o.scoring = RouteScoring::kSigmoid;
    o.n_group = 8;
    o.topk_group = 4;
    o.group_score = rule;
    o.renormalize = true;
    check_route<float>(50, 256, 8, o, true, false, 5);
    check_route<double>(50, 64, 8, o, true, true, 6);
    o.n_group = 16;  // one expert per group
    o.topk_group = 5;
    check_route<float>(50, 16, 4, o, false, false, 7);
    // at most N groups of whole vectors on every SIMD layer (NEON's 4 float and 2 double lanes
    // included): the vector group limit and the selection over the kept groups only
    o.n_group = 2;
    o.topk_group = 1;
    check_route<float>(50, 64, 6, o, true, true, 8);
    check_route<double>(50, 64, 20, o, true, false, 9);  // k past 2N: the insertion path over the kept span
    o.n_group = 4;
    o.topk_group = 2;
    check_route<float>(50, 128, 40, o, true, false, 10);
    check_route<float>(50, 64, 8, o, false, true, 11);
  }
}

TEST_P(Route, ForcedExpertsComeFirstAndErrorsNameArguments) {
  const int64_t n = 16, k = 4;
  std::vector<float> x(2 * n);
  for (int64_t i = 0; i < 2 * n; ++i) x[size_t(i)] = float(i % n);
  std::vector<uint8_t> force(n, 0);
  force[2] = force[5] = 1;
  std::vector<float> w(2 * k);
  std::vector<int32_t> ids(2 * k);
  RouteOptions o;
  o.scoring = RouteScoring::kSigmoid;
  logitkit::route<float>(contiguous<const float>(x.data(), {2, n}), contiguous<float>(w.data(), {2, k}),
                         contiguous<int32_t>(ids.data(), {2, k}), k, o, {}, {}, contiguous<const uint8_t>(force.data(), {n}));
  EXPECT_EQ(ids[0], 5);
  EXPECT_EQ(ids[1], 2);
  EXPECT_EQ(ids[2], 15);
  EXPECT_EQ(ids[3], 14);
  EXPECT_NEAR(w[1], 1 / (1 + std::exp(-2.0)), 1e-6);
  auto run = [&](int64_t kk, RouteOptions opt) {
    logitkit::route<float>(contiguous<const float>(x.data(), {2, n}), contiguous<float>(w.data(), {2, 1}),
                           contiguous<int32_t>(ids.data(), {2, 1}), kk, opt);
  };
  lktest::expect_argument_error("k", [&] { run(0, o); });
  lktest::expect_argument_error("weights", [&] { run(2, o); });
  RouteOptions bad = o;
  bad.n_group = 3;
  lktest::expect_argument_error("n_group", [&] { run(1, bad); });
  bad = o;
  bad.temperature = -1;
  lktest::expect_argument_error("temperature", [&] { run(1, bad); });
  std::vector<uint8_t> too_many(n, 1);
  lktest::expect_argument_error("force", [&] {
    logitkit::route<float>(contiguous<const float>(x.data(), {2, n}), contiguous<float>(w.data(), {2, k}),
                           contiguous<int32_t>(ids.data(), {2, k}), k, o, {}, {},
                           contiguous<const uint8_t>(too_many.data(), {n}));
  });
}

TEST_P(Route, ExpertChoiceDispatchPermuteUnpermute) {
  const int64_t tokens = 50, n = 6, k = 2, cap = 7, hidden = 13;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal;
  std::vector<double> x(static_cast<size_t>(tokens * n));
  for (double& v : x) v = normal(rng);
  // expert choice: each expert's top-cap tokens by softmax probability
  std::vector<double> ew(static_cast<size_t>(n * cap));
  std::vector<int32_t> et(static_cast<size_t>(n * cap));
  logitkit::expert_choice<double>(contiguous<const double>(x.data(), {tokens, n}), contiguous<double>(ew.data(), {n, cap}),
                                  contiguous<int32_t>(et.data(), {n, cap}), cap);
  for (int64_t e = 0; e < n; ++e) {
    std::vector<double> p(static_cast<size_t>(tokens));
    for (int64_t t = 0; t < tokens; ++t) {
      double z = 0;
      for (int64_t j = 0; j < n; ++j) z += std::exp(x[size_t(t * n + j)]);
      p[size_t(t)] = std::exp(x[size_t(t * n + e)]) / z;
    }
    std::vector<int32_t> order(static_cast<size_t>(tokens));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[size_t(a)] > p[size_t(b)]; });
    for (int64_t j = 0; j < cap; ++j) {
      ASSERT_EQ(et[size_t(e * cap + j)], order[size_t(j)]);
      ASSERT_NEAR(ew[size_t(e * cap + j)], p[size_t(order[size_t(j)])], 1e-15);
    }
  }
  // route, dispatch with a capacity and blocks of 4, permute, unpermute
  std::vector<double> w(static_cast<size_t>(tokens * k));
  std::vector<int32_t> ids(static_cast<size_t>(tokens * k));
  RouteOptions o;
  o.renormalize = true;
  logitkit::route<double>(contiguous<const double>(x.data(), {tokens, n}), contiguous<double>(w.data(), {tokens, k}),
                          contiguous<int32_t>(ids.data(), {tokens, k}), k, o);
  logitkit::DispatchOptions d;
  d.capacity = 12;
  d.block_size = 4;
  const int64_t bound = logitkit::dispatch_slot_bound(tokens * k, n, d.block_size);
  std::vector<int64_t> counts(static_cast<size_t>(n)), kept(static_cast<size_t>(n)), offsets(static_cast<size_t>(n + 1));
  std::vector<int32_t> position(static_cast<size_t>(tokens * k)), slot_token(static_cast<size_t>(bound)), slot_pair(static_cast<size_t>(bound)),
      block_expert(static_cast<size_t>(bound / d.block_size));
  logitkit::DispatchPlanView plan{contiguous<int64_t>(counts.data(), {n}), contiguous<int64_t>(kept.data(), {n}),
                                  contiguous<int64_t>(offsets.data(), {n + 1}),
                                  contiguous<int32_t>(position.data(), {tokens, k}),
                                  contiguous<int32_t>(slot_token.data(), {bound}),
                                  contiguous<int32_t>(slot_pair.data(), {bound}),
                                  contiguous<int32_t>(block_expert.data(), {bound / d.block_size})};
  const int64_t slots = logitkit::dispatch<double>(contiguous<const int32_t>(ids.data(), {tokens, k}), n, d, plan);
  EXPECT_EQ(slots, offsets[size_t(n)]);
  for (int64_t e = 0; e < n; ++e) {
    int64_t count = 0;
    for (int32_t id : ids) count += id == e;
    EXPECT_EQ(counts[size_t(e)], count);
    EXPECT_EQ(kept[size_t(e)], std::min<int64_t>(count, 12));
    EXPECT_EQ((offsets[size_t(e + 1)] - offsets[size_t(e)]) % 4, 0);
    // the kept pairs are the expert's first 12 in (token, slot) order
    int64_t seen = 0;
    for (int64_t p = 0; p < tokens * k; ++p) {
      if (ids[size_t(p)] != e) continue;
      const int32_t s = position[size_t(p)];
      if (seen < 12) {
        ASSERT_EQ(s, offsets[size_t(e)] + seen);
        ASSERT_EQ(slot_pair[size_t(s)], p);
        ASSERT_EQ(slot_token[size_t(s)], p / k);
      } else {
        ASSERT_EQ(s, -1);
      }
      ++seen;
    }
  }
  std::vector<double> h(static_cast<size_t>(tokens * hidden)), pe(static_cast<size_t>(slots * hidden)), out(static_cast<size_t>(tokens * hidden));
  for (double& v : h) v = normal(rng);
  logitkit::permute(h.data(), tokens, hidden * 8, contiguous<const int32_t>(slot_token.data(), {slots}), pe.data(),
                    hidden * 8, hidden * 8);
  for (int64_t s = 0; s < slots; ++s)
    for (int64_t i = 0; i < hidden; ++i)
      ASSERT_EQ(pe[size_t(s * hidden + i)], slot_token[size_t(s)] < 0 ? 0.0 : h[size_t(slot_token[size_t(s)] * hidden + i)]);
  for (int64_t s = 0; s < slots; ++s)
    for (int64_t i = 0; i < hidden; ++i) pe[size_t(s * hidden + i)] *= double(s + 1);
  logitkit::unpermute<double>(contiguous<const double>(pe.data(), {slots, hidden}),
                              contiguous<const int32_t>(position.data(), {tokens, k}),
                              contiguous<const double>(w.data(), {tokens, k}), contiguous<double>(out.data(), {tokens, hidden}));
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < hidden; ++i) {
      double ref = 0;
      for (int64_t j = 0; j < k; ++j) {
        const int32_t s = position[size_t(t * k + j)];
        if (s >= 0) ref += w[size_t(t * k + j)] * pe[size_t(s * hidden + i)];
      }
      ASSERT_NEAR(out[size_t(t * hidden + i)], ref, 1e-13 * (1 + std::abs(ref)));
    }
  ids[3] = int32_t(n);  // out of range
  try {
    logitkit::dispatch<double>(contiguous<const int32_t>(ids.data(), {tokens, k}), n, d, plan);
    ADD_FAILURE() << "no error";
  } catch (const logitkit::Error& e) {
    EXPECT_EQ(e.argument(), "experts") << e.what();
  }
}

// d loss / d logits against central differences, for each balancing loss.
TEST_P(Route, BalancingLossGradients) {
  const int64_t tokens = 12, n = 5, k = 2;
  std::mt19937_64 rng(9);
  std::normal_distribution<double> normal;
  std::vector<double> x(static_cast<size_t>(tokens * n)), g(x.size());
  for (double& v : x) v = normal(rng);
  std::vector<int32_t> ids(static_cast<size_t>(tokens * k));
  for (int64_t t = 0; t < tokens; ++t) ids[size_t(t * k)] = int32_t(t % n), ids[size_t(t * k + 1)] = int32_t((t + 2) % n);
  const auto xv = [&](std::vector<double>& v) { return contiguous<const double>(v.data(), {tokens, n}); };
  const auto iv = contiguous<const int32_t>(ids.data(), {tokens, k});
  auto losses = [&](std::vector<double>& v, int which, logitkit::ArrayView<double> grad) {
    switch (which) {
      case 0:
        return logitkit::load_balancing_loss<double>(xv(v), iv, logitkit::BalanceNormalization::kSwitch, 0.1, grad, 2.0);
      case 1:
        return logitkit::load_balancing_loss<double>(xv(v), iv, logitkit::BalanceNormalization::kHfMixtral, 1.0, grad);
      case 2:
        return logitkit::sequence_balance_loss<double>(xv(v), iv, 4, 0.01, grad);
      default:
        return logitkit::router_z_loss<double>(xv(v), grad);
    }
  };
  for (int which = 0; which < 4; ++which) {
    losses(x, which, contiguous<double>(g.data(), {tokens, n}));
    for (size_t i = 0; i < x.size(); ++i) {
      std::vector<double> a = x, b = x;
      const double h = 1e-6;
      a[i] += h;
      b[i] -= h;
      const double fd = (losses(a, which, {}) - losses(b, which, {})) / (2 * h) * (which == 0 ? 2.0 : 1.0);
      ASSERT_NEAR(g[i], fd, 1e-8) << "loss " << which << " entry " << i;
    }
  }
  // the Switch form of a uniform router is alpha; HF's is k alpha
  std::vector<double> zeros(size_t(tokens * n), 0.0);
  std::vector<int32_t> even(static_cast<size_t>(tokens * k));
  for (size_t i = 0; i < even.size(); ++i) even[i] = int32_t(i % size_t(n));
  const auto ev = contiguous<const int32_t>(even.data(), {tokens, k});
  EXPECT_NEAR(logitkit::load_balancing_loss<double>(xv(zeros), ev, logitkit::BalanceNormalization::kSwitch, 0.5), 0.5, 1e-12);
  EXPECT_NEAR(logitkit::load_balancing_loss<double>(xv(zeros), ev, logitkit::BalanceNormalization::kHfMixtral, 1.0), 2.0, 1e-12);
}

TEST_P(Route, ContrastiveLogits) {
  const int64_t n = 37;
  std::vector<float> s(n), w(n), out(n);
  for (int64_t i = 0; i < n; ++i) s[size_t(i)] = float(i % 7) - 3, w[size_t(i)] = float(i % 5);
  logitkit::contrastive_logits<float>(contiguous<const float>(s.data(), {n}), contiguous<const float>(w.data(), {n}),
                                      contiguous<float>(out.data(), {n}), 0.5, 0.1);
  for (int64_t i = 0; i < n; ++i) {
    const double keep = s[size_t(i)] >= std::log(0.1) + 3.0;
    if (keep) {
      ASSERT_NEAR(out[size_t(i)], 1.5 * s[size_t(i)] - 0.5 * w[size_t(i)], 1e-6);
    } else {
      ASSERT_EQ(out[size_t(i)], -INFINITY);
    }
  }
}

LKTEST_FOR_EACH_ISA(Route);

}  // namespace
