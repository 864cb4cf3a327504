// The per-token MoE router, written once over Simd<T> and compiled per ISA.
//
// One token: its E logits are transformed (noise, softcap, activation, temperature) and scored in
// vector passes over an L1-resident scratch row, then one scalar pass keeps the k best
// (class, key, id) triples by insertion: scanning ids in ascending order and inserting only on a
// strictly better key gives ties to the lower id without a sort, and the kept list is already in
// output order. Cost per token: about E exps (or none for scoring kNone) plus E compares and
// k log(E/k) expected insertions: compute-bound in L1 (a router row is at most a few KB), so it is
// judged by instruction count, not the memory roof. No full sort and no E-sized index array.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "route/route_kernels.h"
#include "simd/loops-inl.h"
#include "simd/math-inl.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace route_impl {

// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"): a counter-based
// generator, so the noise of (token, expert) depends on nothing else and every thread count and
// batch split draws the same numbers.
inline void philox4x32(uint32_t (&ctr)[4], uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t{0xD2511F53u} * ctr[0], p1 = uint64_t{0xCD9E8D57u} * ctr[2];
    const uint32_t c0 = static_cast<uint32_t>(p1 >> 32) ^ ctr[1] ^ k0, c1 = static_cast<uint32_t>(p1);
    const uint32_t c2 = static_cast<uint32_t>(p0 >> 32) ^ ctr[3] ^ k1, c3 = static_cast<uint32_t>(p0);
    ctr[0] = c0, ctr[1] = c1, ctr[2] = c2, ctr[3] = c3;
    k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
  }
}

// A uniform in the open interval (0, 1) from 64 random bits: 53-bit grid points plus half a step.
inline double open_uniform(uint32_t hi, uint32_t lo) {
  return (static_cast<double>(((uint64_t{hi} << 32) | lo) >> 11) + 0.5) * 0x1p-53;
}

// The noisy logit of expert e of a token, in double (then rounded to T once).
inline double noisy_logit(double x, double scale, RouteNoise kind, uint64_t seed, uint64_t token, uint64_t e) {
  uint32_t c[4] = {static_cast<uint32_t>(e), static_cast<uint32_t>(e >> 32), static_cast<uint32_t>(token),
                   static_cast<uint32_t>(token >> 32)};
  philox4x32(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const double u1 = open_uniform(c[0], c[1]), u2 = open_uniform(c[2], c[3]);
  switch (kind) {
    case RouteNoise::kGaussian:  // Box-Muller: the cosine branch of the pair
      return x + scale * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    case RouteNoise::kGumbel:
      return x - scale * std::log(-std::log(u1));
    case RouteNoise::kJitter:
      return x * (1.0 + scale * (2.0 * u1 - 1.0));
    case RouteNoise::kNone:
      break;
  }
  return x;
}

// y = activation(softcap(x)) / temperature, NaN kept NaN.
template <class T>
void transform(const RouteConfig<T>& c, const T* x, T* y, size_t n) {
  using S = Simd<T>;
  using V = typename S::V;
  const V zero = S::zero(), one = S::set1(T(1)), two = S::set1(T(2));
  const V vcap = S::set1(c.softcap), two_over_cap = S::set1(c.softcap > 0 ? T(2) / c.softcap : T(0));
  const V temperature = S::set1(c.temperature);
  const bool cap = c.softcap > 0, scale = c.temperature != T(1);
  const RouteActivation act = c.options.activation;
  auto f = [&](V v) {
    if (cap) v = vsoftcap<T>(v, two_over_cap, vcap);
    switch (act) {
      case RouteActivation::kTanh:
        v = vsoftcap<T>(v, two, one);  // tanh
        break;
      case RouteActivation::kSigmoid:
        v = S::div(one, S::add(one, vexp<T>(S::sub(zero, v))));
        break;
      case RouteActivation::kRelu:
        v = S::select(S::ne(v, v), v, S::max(v, zero));
        break;
      case RouteActivation::kNone:
        break;
    }
    return scale ? S::div(v, temperature) : v;
  };
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(y + i, f(S::load(x + i))); },
      [&](size_t i, size_t r) { S::store_tail(y + i, f(S::load_tail(x + i, r, T(0))), r); });
}

// s = score(y) for every entry (softmax: exp(y - m), unnormalised). NaN stays NaN.
template <class T>
void score(RouteScoring scoring, const T* y, T* s, size_t n, T m) {
  using S = Simd<T>;
  using V = typename S::V;
  const V zero = S::zero(), one = S::set1(T(1)), vm = S::set1(m);
  auto f = [&](V v) {
    switch (scoring) {
      case RouteScoring::kSoftmax:
        return vexp<T>(S::sub(v, vm));
      case RouteScoring::kSigmoid:
        return S::div(one, S::add(one, vexp<T>(S::sub(zero, v))));
      case RouteScoring::kSqrtSoftplus: {  // softplus(v) = max(v, 0) + log1p(exp(-|v|))
        const V sp = S::add(S::max(v, zero), vlog1p<T>(vexp<T>(S::sub(zero, S::abs(v)))));
        return S::sqrt(S::select(S::ne(v, v), v, sp));
      }
      case RouteScoring::kNone:
        break;
    }
    return v;
  };
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(s + i, f(S::load(y + i))); },
      [&](size_t i, size_t r) { S::store_tail(s + i, f(S::load_tail(y + i, r, T(0))), r); });
}

// Rank classes, highest first.
enum : uint8_t { kMasked = 0, kNoScore = 1, kScored = 2, kForced = 3 };

template <class T>
inline bool better(uint8_t ca, T ka, uint8_t cb, T kb) {
  return ca > cb || (ca == cb && ka > kb);
}

template <class T>
void route_token(const RouteConfig<T>& c, const RouteToken<T>& t, void* scratch) {
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const size_t n = c.experts, k = c.k;
  const RouteOptions& o = c.options;
  double* wsel = static_cast<double*>(scratch);
  T* y = reinterpret_cast<T*>(wsel + k);
  T* s = y + n;
  T* key = s + n;
  T* group_key = key + n;
  uint8_t* cls = reinterpret_cast<uint8_t*>(group_key + c.n_group);
  uint8_t* group_kept = cls + n;

  // Transformed logits.
  const T* x = t.x;
  if (o.noise != RouteNoise::kNone) {
    for (size_t e = 0; e < n; ++e) {
      const double scale = t.noise_std ? static_cast<double>(t.noise_std[e]) : o.noise_std;
      y[e] = static_cast<T>(noisy_logit(static_cast<double>(x[e]), scale, o.noise, o.seed, t.token, e));
    }
    x = y;
  }
  transform<T>(c, x, y, n);

  // Scores: masked and NaN entries have none (0); a softmax is normalised over the others.
  T m = -kInf;
  if (o.scoring == RouteScoring::kSoftmax)
    for (size_t e = 0; e < n; ++e)
      if (!(t.mask && !t.mask[e]) && y[e] > m) m = y[e];
  if (o.scoring == RouteScoring::kSoftmax && m == -kInf) {
    for (size_t e = 0; e < n; ++e) s[e] = T(0);  // no finite logit: no probability mass
  } else {
    score<T>(o.scoring, y, s, n, m);
  }
  double z = 0.0;
  for (size_t e = 0; e < n; ++e) {
    const bool usable = !(t.mask && !t.mask[e]) && y[e] == y[e];
    if (!usable) s[e] = T(0);
    z += static_cast<double>(s[e]);
  }
  if (o.scoring == RouteScoring::kSoftmax && z != 0.0) {  // z NaN: a +inf logit, as torch's softmax
    const T inv = static_cast<T>(1.0 / z);
    for (size_t e = 0; e < n; ++e) s[e] *= inv;
  }

  // Selection keys and rank classes.
  const bool key_from_scores = c.bias || (c.n_group > 1 && o.group_score == GroupScore::kTop2Sum);
  for (size_t e = 0; e < n; ++e) {
    T v = key_from_scores ? s[e] + (c.bias ? c.bias[e] : T(0)) : y[e];
    uint8_t r = kScored;
    if (t.mask && !t.mask[e]) {
      r = kMasked;
    } else if (y[e] != y[e] || v != v) {
      r = kNoScore;
    }
    if (t.force && t.force[e]) r = kForced;
    if (r <= kNoScore || v != v) v = r == kForced ? -kInf : T(0);  // NaN keys never compare
    cls[e] = r;
    key[e] = v;
  }

  // Group-limited selection: the experts of every group outside the best topk_group get key -inf.
  if (c.n_group > 1 && c.topk_group < c.n_group) {
    const size_t size = n / c.n_group;
    for (size_t g = 0; g < c.n_group; ++g) {
      T first = -kInf, second = -kInf;
      for (size_t e = g * size; e < (g + 1) * size; ++e) {
        if (cls[e] < kScored) continue;
        const T v = key[e];
        if (v > first) {
          second = first, first = v;
        } else if (v > second) {
          second = v;
        }
      }
      T gk = first;
      if (o.group_score == GroupScore::kTop2Sum && size > 1) gk = first + second;
      group_key[g] = gk == gk ? gk : -kInf;  // +inf + -inf: ranked as an empty group
    }
    for (size_t g = 0; g < c.n_group; ++g) {  // group g is kept when fewer than topk_group beat it
      size_t beaten_by = 0;
      for (size_t h = 0; h < c.n_group && beaten_by < c.topk_group; ++h)
        beaten_by += group_key[h] > group_key[g] || (group_key[h] == group_key[g] && h < g);
      group_kept[g] = beaten_by < c.topk_group;
    }
    for (size_t e = 0; e < n; ++e)
      if (cls[e] == kScored && !group_kept[e / size]) key[e] = -kInf;
  }

  // The k best (class, key) in id order: strict improvement only, so ties keep the lower id.
  int32_t* ids = t.ids;
  size_t filled = 0;
  for (size_t e = 0; e < n; ++e) {
    const uint8_t ce = cls[e];
    const T ke = key[e];
    if (filled == k) {
      const size_t last = ids[k - 1];
      if (!better(ce, ke, cls[last], key[last])) continue;
      --filled;
    }
    size_t j = filled;
    for (; j > 0; --j) {
      const size_t prev = ids[j - 1];
      if (!better(ce, ke, cls[prev], key[prev])) break;
      ids[j] = ids[j - 1];
    }
    ids[j] = static_cast<int32_t>(e);
    ++filled;
  }

  // Weights, in double: the selected scores, or a softmax over the selected transformed logits.
  double* w = wsel;
  double sel_max = -kInf;
  if (o.weights_from == RouteWeights::kSelected)
    for (size_t j = 0; j < k; ++j) {
      const size_t e = ids[j];
      if (cls[e] != kMasked && y[e] > sel_max) sel_max = y[e];
    }
  double wsum = 0.0;
  for (size_t j = 0; j < k; ++j) {
    const size_t e = ids[j];
    double v = 0.0;
    if (cls[e] != kMasked && y[e] == y[e] && y[e] != -kInf) {
      v = o.weights_from == RouteWeights::kSelected ? std::exp(static_cast<double>(y[e]) - sel_max)
                                                    : static_cast<double>(s[e]);
    }
    w[j] = v;
    wsum += v;
  }
  if (o.weights_from == RouteWeights::kSelected && wsum != 0.0) {
    for (size_t j = 0; j < k; ++j) w[j] /= wsum;
    wsum = wsum == wsum ? 1.0 : wsum;
  }
  const double total = wsum + o.renormalize_eps;
  const bool divide = o.renormalize && total != 0.0;  // a zero sum leaves the weights 0
  for (size_t j = 0; j < k; ++j) t.weights[j] = static_cast<T>((divide ? w[j] / total : w[j]) * o.scaling_factor);
}

template <class T>
RouteKernels<T> make_route_kernels() {
  RouteKernels<T> k{};
  k.route_token = route_token<T>;
  return k;
}

}  // namespace route_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
