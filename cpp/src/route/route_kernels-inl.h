// The MoE router, written once over Simd<T> and compiled per ISA.
//
// Per token, the E logits are transformed (noise, softcap, activation, temperature) and scored in
// vector passes over an L1-resident scratch row, then the k best keys are selected without a sort:
// - route_token_fast, the common token (no forced experts, every allowed key finite): one pass
//   computes the keys (with the scores, for a sigmoid or sqrt-softplus router), checks them and
//   keeps their lane-wise top two; a group limit reduces groups of whole vectors by a tree of
//   folds; a threshold from the lane-wise top two, the few candidates above it compacted and
//   ranked by vector compares (select_top_k); the weights of the k selected from one small vector
//   pass.
// - route_rows: batches of routers with E <= 256 and k <= 8 whose keys are the logits or
//   bias-shifted non-softmax scores (Mixtral, Qwen, OLMoE, gpt-oss, Llama 4, ungrouped sigmoid
//   routers) take N tokens per vector and a sorting network on packed (key, id) integers, or a
//   vertical insertion network, with the same bits as the one-token path.
// - route_token_general, any other token (NaN, forced, fewer than k usable): (class, key, id)
//   kept by insertion in id order, weights in double.
// Ties go to the lower id on every path. Compute-bound in L1 (a router row is at most a few KB):
// judged by instruction count, not the memory roof (bench/README.md has the measured bounds).
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

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

// s = score(y) for every entry (softmax: exp(y - m), unnormalised). NaN stays NaN. One loop per
// scoring (the switch outside the loop: a router row is short, so per-vector dispatch showed).
// exp: an exp policy of simd/math-inl.h (CheckedExp by default; the same bits from any of them).
template <class T, RouteScoring kScoring, class Exp = CheckedExp<T>>
inline __attribute__((always_inline)) typename Simd<T>::V score_vector(typename Simd<T>::V v, typename Simd<T>::V vm,
                                                                       Exp&& exp = Exp{}) {
  using S = Simd<T>;
  using V = typename S::V;
  const V zero = S::zero(), one = S::set1(T(1));
  auto exp_of = [&](V x) __attribute__((always_inline)) {
    V e[1] = {x};
    exp(e);
    return e[0];
  };
  if constexpr (kScoring == RouteScoring::kSoftmax) {
    return exp_of(S::sub(v, vm));
  } else if constexpr (kScoring == RouteScoring::kSigmoid) {
    return S::div(one, S::add(one, exp_of(S::sub(zero, v))));
  } else if constexpr (kScoring == RouteScoring::kSqrtSoftplus) {  // softplus = max(v, 0) + log1p(exp(-|v|))
    const V sp = S::add(S::max(v, zero), vlog1p<T>(exp_of(S::sub(zero, S::abs(v)))));
    return S::sqrt(S::select(S::ne(v, v), v, sp));
  } else {
    return v;
  }
}

template <class T, RouteScoring kScoring>
void score_as(const T* y, T* s, size_t n, T m) {
  using S = Simd<T>;
  using V = typename S::V;
  const V vm = S::set1(m);
  auto f = [&](V v) __attribute__((always_inline)) { return score_vector<T, kScoring>(v, vm); };
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(s + i, f(S::load(y + i))); },
      [&](size_t i, size_t r) { S::store_tail(s + i, f(S::load_tail(y + i, r, T(0))), r); });
}

template <class T>
void score(RouteScoring scoring, const T* y, T* s, size_t n, T m) {
  switch (scoring) {
    case RouteScoring::kSoftmax:
      return score_as<T, RouteScoring::kSoftmax>(y, s, n, m);
    case RouteScoring::kSigmoid:
      return score_as<T, RouteScoring::kSigmoid>(y, s, n, m);
    case RouteScoring::kSqrtSoftplus:
      return score_as<T, RouteScoring::kSqrtSoftplus>(y, s, n, m);
    case RouteScoring::kNone:
      break;
  }
  if (s != y) std::copy(y, y + n, s);
}

// 0, 1, 2, ... as T: lane indices for compares (at least 2N of them on every layer).
template <class T>
inline const T* lane_indices() {
  alignas(64) static constexpr T iota[32] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                                16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
  static_assert(2 * Simd<T>::N <= 32, "lane_indices covers 2N lanes");
  return iota;
}

// Lanes [0, r) of a vector.
template <class T>
inline typename Simd<T>::M lanes_below(size_t r) {
  using S = Simd<T>;
  const T* iota = lane_indices<T>();
  return S::lt(S::load(iota), S::set1(static_cast<T>(r)));
}

// Rank classes, highest first.
enum : uint8_t { kMasked = 0, kNoScore = 1, kScored = 2, kForced = 3 };

template <class T>
inline bool better(uint8_t ca, T ka, uint8_t cb, T kb) {
  return ca > cb || (ca == cb && ka > kb);
}

template <class T>
void route_token_general(const RouteConfig<T>& c, const RouteToken<T>& t, double* wsel, T* y, T* s, T* key,
                         T* group_key, uint8_t* cls, uint8_t* group_kept) {
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const size_t n = c.experts, k = c.k;
  const RouteOptions& o = c.options;
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


// The k best of keys kp[0..n) (every key finite or -inf, at least k finite), ties to the lower
// id, into ids (descending) and sel (their keys).
//
// For k <= 2 S::N, a threshold first: the lane-wise largest and second largest keys are 2N
// distinct entries (or -inf placeholders), so the k-th largest of them, thr, is a lower bound of
// the k-th largest key, and only entries >= thr can be selected: about k + 1 of them on random
// rows (measured: 8.6 for k = 8 of 64 or of 384 experts). Those candidates are compacted in id
// order and each one's rank counted with vector compares (keys above it, plus equal keys of lower
// id): no data-dependent branch, ties exact. Rows with many candidates (many tied keys), and
// larger k, take the insertion path: ids scanned upwards, an entry inserted only past strictly
// smaller keys (so equal keys stay in id order), behind a vector filter on the current k-th key.
// lane_top2, where the caller's key pass already has them: the 2N lane-wise largest and second
// largest keys of the row (vector lanes of kp from index 0, -inf past n), which this function would
// otherwise compute in a pass of its own.
// span_begin (with lane_top2): only the entries of `spans` spans of span_len entries (whole vectors,
// ascending, disjoint) are keys, the rest of kp is never read (a group limit's kept groups), and
// lane_top2 is over those.
template <class T>
void select_top_k(const T* kp, size_t n, size_t k, int32_t* ids, T* sel, const T* lane_top2 = nullptr,
                  const size_t* span_begin = nullptr, size_t spans = 0, size_t span_len = 0) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr size_t N = S::N;
  constexpr size_t kMaxRanked = 4 * N;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const T* iota = lane_indices<T>();
  const size_t whole = 0;
  if (!span_begin) {  // one span: the row
    span_begin = &whole;
    spans = 1;
    span_len = n;
  }
  if (k <= 2 * N) {
    T thr = -kInf;  // rows of at most 2N entries: every entry is a candidate
    if (spans * span_len > 2 * N) {
      V first = S::set1(-kInf), second = first;
      if (lane_top2) {
        first = S::load(lane_top2);
        second = S::load(lane_top2 + N);
      } else {
        auto top2 = [&](V v) {
          second = S::max(second, S::min(first, v));
          first = S::max(first, v);
        };
        for_vectors<S>(
            n, [&](size_t i, int) { top2(S::load(kp + i)); },
            [&](size_t i, size_t r) { top2(S::load_tail(kp + i, r, -kInf)); });
      }
      alignas(64) T lanes[2 * N < 4 ? 4 : 2 * N] = {-kInf, -kInf, -kInf, -kInf};  // -inf past 2N: reaches nothing finite
      S::store(lanes, first);
      S::store(lanes + N, second);
      // thr = the largest lane value that at least k lane values reach: reach counted per lane by
      // accumulating compares against each broadcast value (no movemask per pair), in four
      // independent sums per vector (one chain of 2N dependent adds was the loop's bound).
      // For k <= N/2 the lane maxima alone (N distinct entries) give the bound: half the
      // compares, about two more candidates on random rows.
      const V one = S::set1(T(1)), a0 = first, a1 = second;
      const bool maxima_only = k <= N / 2;
      const size_t values = maxima_only ? N : 2 * N;
      V reach0[4] = {S::zero(), S::zero(), S::zero(), S::zero()}, reach1[4] = {reach0[0], reach0[0], reach0[0], reach0[0]};
      for (size_t i = 0; i < values; i += 4)  // values is N, 2N or, for N <= 2, padded to 4
#pragma GCC unroll 4
        for (size_t u = 0; u < 4; ++u) {
          const V v = S::set1(lanes[i + u]);
          reach0[u] = S::add(reach0[u], S::select(S::le(a0, v), one, S::zero()));
          if (!maxima_only) reach1[u] = S::add(reach1[u], S::select(S::le(a1, v), one, S::zero()));
        }
      const V r0 = S::add(S::add(reach0[0], reach0[1]), S::add(reach0[2], reach0[3]));
      const V r1 = S::add(S::add(reach1[0], reach1[1]), S::add(reach1[2], reach1[3]));
      const V vk = S::set1(T(k)), none = S::set1(-kInf);
      thr = S::reduce_max(S::max(S::select(S::le(vk, r0), a0, none), S::select(S::le(vk, r1), a1, none)));
    }
    // Candidates >= thr, compacted in id order (ids as T: exact below 2^24).
    alignas(64) T cand[kMaxRanked + N], cand_id[kMaxRanked + N];
    size_t count = 0;
    const V vthr = S::set1(thr);
    size_t i = 0;
    bool overflow = false;
    // Every vector compressed, empty or not: about one vector in three holds one of the ~k
    // candidates, and a branch on that mispredicts more than an empty compress costs (E = 384, Zen
    // 4: 430 against 320 ns a token).
    auto take = [&](V v, size_t at, size_t lanes_valid) {
      auto keep = S::le(vthr, v);
      if (lanes_valid < N) keep = S::mask_and(keep, lanes_below<T>(lanes_valid));
      if (count + N > kMaxRanked + N) {
        overflow = true;
        return;
      }
      const size_t got = S::compress_store(cand + count, keep, v);
      S::compress_store(cand_id + count, keep, S::add(S::load(iota), S::set1(T(at))));
      count += got;
      overflow = overflow || count > kMaxRanked;
    };
    for (size_t span = 0; span < spans; ++span) {
      i = span_begin[span];
      const size_t end = i + span_len;
      for (; i + N <= end && !overflow; i += N) take(S::load(kp + i), i, N);
      if (i < end && !overflow) take(S::load_tail(kp + i, end - i, -kInf), i, end - i);
    }
    if (!overflow && n < (size_t{1} << 24)) {
      const size_t padded = (count + N - 1) / N * N;
      for (size_t j = count; j < padded; ++j) cand[j] = -kInf, cand_id[j] = T(n);  // never before a real one
      // rank of each candidate (keys above it plus equal keys of lower id), N candidates at a
      // time, accumulated against each broadcast candidate
      alignas(64) T rank[kMaxRanked + N];
      for (size_t c0 = 0; c0 < padded; c0 += N) {
        const V mine = S::load(cand + c0), at = S::add(S::load(iota), S::set1(T(c0)));
        V r = S::zero();
        for (size_t j = 0; j < count; ++j) {
          const V other = S::set1(cand[j]), pos = S::set1(T(j));
          const auto ahead = S::mask_or(S::gt(other, mine), S::mask_and(S::eq(other, mine), S::lt(pos, at)));
          r = S::add(r, S::select(ahead, S::set1(T(1)), S::zero()));
        }
        S::store(rank + c0, r);
      }
      // scattered by rank without a branch: ranks >= k land in slot k, which is discarded
      int32_t slot_id[kMaxRanked + 1];
      T slot_key[kMaxRanked + 1];
      for (size_t c = 0; c < count; ++c) {
        const size_t rk = std::min(static_cast<size_t>(static_cast<int32_t>(rank[c])), k);
        slot_id[rk] = static_cast<int32_t>(cand_id[c]);
        slot_key[rk] = cand[c];
        // ~k iterations: kept scalar (GCC would vectorise this into a gather/scatter, microcoded
        // and slower than the loop on current x86 cores)
        __asm__ volatile("" ::: "memory");
      }
      std::copy(slot_id, slot_id + k, ids);
      std::copy(slot_key, slot_key + k, sel);
      return;
    }
  }
  size_t filled = 0;
  auto insert = [&](size_t e) {
    const T ke = kp[e];
    if (filled == k) {
      if (!(ke > sel[k - 1])) return;
      --filled;
    }
    size_t j = filled;
    for (; j > 0 && ke > sel[j - 1]; --j) {
      sel[j] = sel[j - 1];
      ids[j] = ids[j - 1];
    }
    sel[j] = ke;
    ids[j] = static_cast<int32_t>(e);
    ++filled;
  };
  auto candidates = [&](V v) { return S::bits(filled < k ? S::le(S::set1(-kInf), v) : S::gt(v, S::set1(sel[k - 1]))); };
  for (size_t span = 0; span < spans; ++span) {
    size_t i = span_begin[span];
    const size_t end = i + span_len;
    for (; i + N <= end; i += N)
      for (unsigned b = candidates(S::load(kp + i)); b; b &= b - 1) insert(i + static_cast<size_t>(__builtin_ctz(b)));
    if (i < end)
      for (unsigned b = candidates(S::load_tail(kp + i, end - i, -kInf)) & ((1u << (end - i)) - 1); b; b &= b - 1)
        insert(i + static_cast<size_t>(__builtin_ctz(b)));
  }
}

// The selected weights' normalisation, in T, in one fixed order, shared by the one-token fast path
// and the many-token one (route_rows), which does the same operations lane-wise: a token gets the
// same bits on either. exp_of_selected: w holds exp(y - m) of the selected (weights_from
// kSelected, or a renormalised softmax, whose normaliser cancels), a softmax over them first.
template <class T>
void finish_weights(const RouteOptions& o, bool exp_of_selected, T* w, size_t k) {
  T wsum = T(0);
  for (size_t j = 0; j < k; ++j) wsum += w[j];
  T divisor = T(1);
  if (exp_of_selected) {
    divisor = wsum;
    wsum = T(1);
  }
  const T total = wsum + static_cast<T>(o.renormalize_eps);
  if (o.renormalize && total != T(0)) divisor *= total;
  const T scale = static_cast<T>(o.scaling_factor);
  for (size_t j = 0; j < k; ++j) w[j] = w[j] / divisor * scale;
}

// The keys' pass of route_token_fast: key = src (+ bias), masked entries -inf, stored where `key`
// is non-null; the count of masked entries; the keys' lane-wise largest and second largest into
// lane_top2 (2N values: select_top_k's threshold without a pass of its own). Returns whether every
// allowed key is finite. kFused != kNone: src holds the transformed logits, and their scores (a
// non-softmax scoring, which needs no row maximum) are computed and stored to s here, in the same
// pass, rather than in a pass before it.
// group_top2 (groups of group_size entries, whole vectors): each group's lane-wise largest and
// second largest instead, at group_top2 + 2 g N and + (2 g + 1) N, for group_limit_vectors.
template <class T, RouteScoring kFused, bool kWriteScores = kFused != RouteScoring::kNone>
bool key_pass(const T* src, T* s, const T* bias, const uint8_t* mask, T* key, size_t n, size_t& masked_out,
              T* lane_top2, size_t group_size = 0, T* group_top2 = nullptr) {
  using S = Simd<T>;
  using V = typename S::V;
  using M = typename S::M;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const V minus_inf = S::set1(-kInf), zero = S::zero();
  const M all = S::le(minus_inf, minus_inf);  // all true
  // The exp's range check deferred to the end of the row (with_guarded_exp: the row again with the
  // checked exp if an argument was out of range), and the finiteness check an accumulated
  // key * 0 + poison (NaN from the first allowed key that is not finite): no compare, mask move or
  // branch per vector (E = 384: 35% of the pass).
  auto pass = [&](auto& exp) __attribute__((always_inline)) {
    V first = minus_inf, second = minus_inf, poison = zero;
    size_t masked = 0;
    auto step = [&](V v, M ok, size_t i, size_t r) __attribute__((always_inline)) {
      if constexpr (kWriteScores) {
        v = score_vector<T, kFused>(v, zero, exp);
        if (r == S::N) S::store(s + i, v);
        else S::store_tail(s + i, v, r);
      }
      if (bias) v = S::add(v, r == S::N ? S::load(bias + i) : S::load_tail(bias + i, r, T(0)));
      if (mask) {
        masked += static_cast<size_t>(__builtin_popcount(~S::bits(ok) & ((r == S::N ? (1u << S::N) : (1u << r)) - 1u)));
        v = S::select(ok, v, minus_inf);
      }
      if constexpr (S::N == 1) {
        poison = S::add(S::mul(mask ? S::select(ok, v, zero) : v, zero), poison);  // the baseline has no FMA
      } else {
        poison = S::fma(mask ? S::select(ok, v, zero) : v, zero, poison);
      }
      if (key) {
        if (r == S::N) S::store(key + i, v);
        else S::store_tail(key + i, v, r);
      }
      if (r < S::N) v = S::select(lanes_below<T>(r), v, minus_inf);
      second = S::max(second, S::min(first, v));
      first = S::max(first, v);
    };
    auto run = [&](size_t begin, size_t count) __attribute__((always_inline)) {
      for_vectors<S>(
          count,
          [&](size_t i, int) __attribute__((always_inline)) {
            step(S::load(src + begin + i), mask ? S::load_mask(mask + begin + i) : all, begin + i, S::N);
          },
          [&](size_t i, size_t r) __attribute__((always_inline)) {
            // lanes past r hold 0 (finite) or are not allowed: they never poison, and step counts
            // masked entries among the first r lanes only
            step(S::load_tail(src + begin + i, r, T(0)), mask ? S::load_mask_tail(mask + begin + i, r) : all, begin + i, r);
          });
    };
    if (group_top2) {
      for (size_t g = 0, begin = 0; begin < n; ++g, begin += group_size) {
        first = second = minus_inf;
        run(begin, group_size);
        S::store(group_top2 + 2 * g * S::N, first);
        S::store(group_top2 + (2 * g + 1) * S::N, second);
      }
    } else {
      run(0, n);
      S::store(lane_top2, first);
      S::store(lane_top2 + S::N, second);
    }
    masked_out = masked;
    return !S::any(S::ne(poison, poison));
  };
  if constexpr (kWriteScores && kFused != RouteScoring::kNone) {
    bool guarded = true;
    return with_guarded_exp<T>(pass, guarded);
  } else {
    CheckedExp<T> unused;
    return pass(unused);
  }
}

// fuse: the scores computed in the key pass (scoring "none": s is a copy of y).
template <class T>
bool key_pass_scoring(bool fuse, RouteScoring scoring, const T* src, T* s, const T* bias, const uint8_t* mask, T* key,
                      size_t n, size_t& masked_out, T* lane_top2, size_t group_size, T* group_top2) {
  if (fuse) switch (scoring) {
      case RouteScoring::kSigmoid:
        return key_pass<T, RouteScoring::kSigmoid>(src, s, bias, mask, key, n, masked_out, lane_top2, group_size, group_top2);
      case RouteScoring::kSqrtSoftplus:
        return key_pass<T, RouteScoring::kSqrtSoftplus>(src, s, bias, mask, key, n, masked_out, lane_top2, group_size,
                                                        group_top2);
      case RouteScoring::kNone:
        return key_pass<T, RouteScoring::kNone, true>(src, s, bias, mask, key, n, masked_out, lane_top2, group_size,
                                                      group_top2);
      case RouteScoring::kSoftmax:  // never fused: a softmax needs the row maximum first
        break;
    }
  return key_pass<T, RouteScoring::kNone>(src, s, bias, mask, key, n, masked_out, lane_top2, group_size, group_top2);
}

// One level of group_limit_vectors's tree per Width (N/2 down to 1): the Count vectors' blocks of
// 2 Width lanes merged pairwise into Count/2 vectors (one vector folds with itself), each lane's
// (largest, second largest) pair the top two of the two it merges. Count a constant: the loops
// unroll and the vectors stay in registers.
template <class T, size_t Width, size_t Count>
__attribute__((always_inline)) inline void fold_top2(typename Simd<T>::V* f, typename Simd<T>::V* sc,
                                                     typename Simd<T>::V* id) {
  using S = Simd<T>;
  using V = typename S::V;
  if constexpr (Width >= 1) {
    constexpr size_t pairs = Count > 1 ? Count / 2 : 1;
    for (size_t i = 0; i < pairs; ++i) {
      const size_t x = Count > 1 ? 2 * i : 0, y = Count > 1 ? 2 * i + 1 : 0;
      V flo, fhi, slo, shi, idlo, idhi;
      S::template fold<Width>(f[x], f[y], flo, fhi);
      S::template fold<Width>(sc[x], sc[y], slo, shi);
      S::template fold<Width>(id[x], id[y], idlo, idhi);
      f[i] = S::max(flo, fhi);
      sc[i] = S::max(S::max(slo, shi), S::min(flo, fhi));
      id[i] = idlo;
    }
    fold_top2<T, Width / 2, pairs>(f, sc, id);
  }
}

// The group limit in vector form, for groups of whole vectors, at most N of them, on layers with a
// fold: each group's lane-wise largest and second largest (group_top2, from key_pass), reduced
// across lanes by a tree of folds (pairs of vectors' blocks halved and packed, log2 N levels, about
// 9 operations a merge: no horizontal reduction per group and no transposition), give every group's
// key (its maximum, or the sum of its two largest) in the lanes of one vector; ranked by broadcast
// compares (ties to the lower group). The kept groups' first entries go to kept_begin in ascending
// order (topk_group of them: select_top_k reads those spans only, so the losing groups' keys need no
// rewrite to -inf), and lane_top2 becomes the lane-wise top two of the kept groups, as key_pass's.
// Returns the count of allowed experts kept. The same group keys, bit for bit, as
// route_token_general's loop (the same two values added).
template <class T>
size_t group_limit_vectors(const RouteConfig<T>& c, const T* key, bool masked, const T* group_top2, T* lane_top2,
                           size_t* kept_begin) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr size_t N = S::N;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const size_t groups = c.n_group, size = c.experts / groups;
  const V minus_inf = S::set1(-kInf);
  size_t padded = 1;
  while (padded < groups) padded *= 2;
  V f[N], sc[N], id[N];
  for (size_t g = 0; g < padded; ++g) {
    f[g] = g < groups ? S::load(group_top2 + 2 * g * N) : minus_inf;
    sc[g] = g < groups ? S::load(group_top2 + (2 * g + 1) * N) : minus_inf;
    id[g] = S::set1(static_cast<T>(g));
  }
  if constexpr (HasFold<S>::value) {
    switch (padded) {  // a power of two up to N
      case 1: fold_top2<T, N / 2, 1>(f, sc, id); break;
      case 2: fold_top2<T, N / 2, 2>(f, sc, id); break;
      case 4: fold_top2<T, N / 2, (N >= 4 ? 4 : 1)>(f, sc, id); break;
      case 8: fold_top2<T, N / 2, (N >= 8 ? 8 : 1)>(f, sc, id); break;
      default: fold_top2<T, N / 2, N>(f, sc, id); break;
    }
  }
  V gk = f[0];
  if (c.options.group_score == GroupScore::kTop2Sum && size > 1) gk = S::add(f[0], sc[0]);
  gk = S::select(S::eq(gk, gk), gk, minus_inf);  // +inf + -inf cannot occur here (keys finite or -inf)
  alignas(64) T lane_key[N], lane_group[N], group_key[N];
  S::store(lane_key, gk);
  S::store(lane_group, id[0]);
  for (size_t l = 0; l < N; ++l) {
    size_t g = static_cast<size_t>(lane_group[l]);
    // opaque to the vectoriser: GCC made this loop an AVX-512 scatter, microcoded on Zen 4 and read
    // back right below by scalar loads (a third of DeepSeek-V3's routing time)
    asm("" : "+r"(g));
    group_key[g] = lane_key[l];
  }
  // ranked in group order (lane g: group g), so the kept lanes' bits are the kept groups
  for (size_t g = groups; g < N; ++g) group_key[g] = -kInf;
  const V keys = S::load(group_key), lane = S::load(lane_indices<T>()), one = S::set1(T(1));
  V rank = S::zero();
  for (size_t h = 0; h < groups; ++h) {
    const V other = S::set1(group_key[h]);
    const auto ahead = S::mask_or(S::gt(other, keys), S::mask_and(S::eq(other, keys), S::lt(S::set1(T(h)), lane)));
    rank = S::add(rank, S::select(ahead, one, S::zero()));
  }
  const unsigned kept = S::bits(S::lt(rank, S::set1(static_cast<T>(c.topk_group)))) & ((1u << groups) - 1u);
  // topk_group iterations whatever the ranking (ranks are distinct): a predictable loop
  V first = minus_inf, second = minus_inf;
  size_t kept_allowed = 0, spans = 0;
  for (unsigned b = kept; b; b &= b - 1) {
    const size_t g = static_cast<size_t>(__builtin_ctz(b));
    kept_begin[spans++] = g * size;
    const V a = S::load(group_top2 + 2 * g * N);
    second = S::max(S::max(second, S::load(group_top2 + (2 * g + 1) * N)), S::min(first, a));
    first = S::max(first, a);
    if (masked)
      for (size_t i = g * size; i < (g + 1) * size; i += N)
        kept_allowed += static_cast<size_t>(__builtin_popcount(S::bits(S::lt(minus_inf, S::load(key + i)))));
  }
  S::store(lane_top2, first);
  S::store(lane_top2 + N, second);
  return masked ? kept_allowed : size * c.topk_group;
}

// Most experts per token the fast path selects (its buffers live on the stack).
inline constexpr size_t kFastMaxK = 64;

// The common token: no forced experts, every allowed key finite, at least k allowed (after the
// group limit). Vector passes for the scores and keys, select_top_k, the k weights from a small
// vector. Returns false for any other token, which route_token_general then routes (rewriting
// every output this path may have written).
// GCC cannot see that score() reads only the k (padded to whole vectors) initialised entries of
// the stack arrays below.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
template <class T>
bool route_token_fast(const RouteConfig<T>& c, const RouteToken<T>& t, const T* y, T* s, T* key, T* group_key) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const RouteOptions& o = c.options;
  const size_t n = c.experts, k = c.k;
  if (t.force || k > kFastMaxK) return false;
  const bool softmax = o.scoring == RouteScoring::kSoftmax;
  const bool grouped = c.n_group > 1 && c.topk_group < c.n_group;
  const bool key_from_scores = c.bias || (c.n_group > 1 && o.group_score == GroupScore::kTop2Sum);
  // A softmax's normaliser is needed unless renormalising by the selected sum cancels it.
  const bool need_z = softmax && o.weights_from == RouteWeights::kScores && !(o.renormalize && o.renormalize_eps == 0.0);
  const bool all_scores = key_from_scores || need_z;
  const uint8_t* mask = t.mask;
  const V minus_inf = S::set1(-kInf);
  auto allowed = [&](size_t i) { return S::load_mask(mask + i); };
  auto allowed_tail = [&](size_t i, size_t r) { return S::load_mask_tail(mask + i, r); };

  if (all_scores) {
    T m = T(0);
    if (softmax) {  // the max over allowed experts
      V mx = minus_inf;
      for_vectors<S>(
          n,
          [&](size_t i, int) {
            const V v = S::load(y + i);
            mx = S::max(mx, mask ? S::select(allowed(i), v, minus_inf) : v);
          },
          [&](size_t i, size_t r) {
            const V v = S::load_tail(y + i, r, -kInf);
            mx = S::max(mx, mask ? S::select(allowed_tail(i, r), v, minus_inf) : v);
          });
      m = S::reduce_max(mx);
      if (!(m > -kInf && m < kInf)) return false;
    }
    if (softmax) {  // other scorings: in the key pass. Masked entries take no share of the normaliser
      score<T>(o.scoring, y, s, n, m);
      V acc = S::zero();
      for_vectors<S>(
          n,
          [&](size_t i, int) {
            const V v = S::load(s + i);
            acc = S::add(acc, mask ? S::select(allowed(i), v, S::zero()) : v);
          },
          [&](size_t i, size_t r) {
            const V v = S::load_tail(s + i, r, T(0));
            acc = S::add(acc, mask ? S::select(allowed_tail(i, r), v, S::zero()) : v);
          });
      const V inv = S::set1(T(1) / S::reduce_add(acc));
      for_vectors<S>(
          n, [&](size_t i, int) { S::store(s + i, S::mul(S::load(s + i), inv)); },
          [&](size_t i, size_t r) { S::store_tail(s + i, S::mul(S::load_tail(s + i, r, T(0)), inv), r); });
    }
  }
  // Keys (masked: -inf), the check that every allowed key is finite, the count of allowed and the
  // keys' lane-wise top two, in one pass (with the scores where they need no row maximum).
  const bool fuse_scores = all_scores && !softmax;
  const T* src = key_from_scores && !fuse_scores ? s : y;
  const bool copy = key_from_scores || mask || grouped;
  // Groups of whole vectors, at most N of them, on a layer with a fold: the group limit in vector
  // form, from each group's lane-wise top two taken in the key pass.
  const size_t size = n / c.n_group;
  const bool vector_groups = grouped && HasFold<S>::value && size % S::N == 0 && c.n_group <= S::N;
  alignas(64) T lane_top2[2 * S::N], group_top2[2 * S::N * S::N];
  size_t masked_out = 0;
  const bool finite = key_pass_scoring<T>(fuse_scores, o.scoring, src, s, c.bias, mask, copy ? key : nullptr, n,
                                          masked_out, lane_top2, size, vector_groups ? group_top2 : nullptr);
  if (!finite || n - masked_out < k) return false;
  const T* kp = copy ? key : y;  // grouped implies copy: the group limit reads key
  bool top2_valid = true;
  size_t kept_begin[S::N];
  const size_t* spans = nullptr;

  if (grouped) {  // group keys over the allowed experts; losing groups are left out of the selection
    size_t kept_allowed = 0;
    if (vector_groups) {
      kept_allowed = group_limit_vectors<T>(c, key, mask != nullptr, group_top2, lane_top2, kept_begin);
      spans = kept_begin;
    } else {
      top2_valid = false;
      for (size_t g = 0; g < c.n_group; ++g) {
        // lane-wise largest and second largest, then the group's two largest from those 2N values
        V first = minus_inf, second = minus_inf;
        auto top2 = [&](V v) {
          second = S::max(second, S::min(first, v));
          first = S::max(first, v);
        };
        const T* gp = key + g * size;
        for_vectors<S>(
            size, [&](size_t i, int) { top2(S::load(gp + i)); },
            [&](size_t i, size_t r) { top2(S::load_tail(gp + i, r, -kInf)); });
        const T best = S::reduce_max(first);
        T gk = best;
        if (o.group_score == GroupScore::kTop2Sum && size > 1) {
          const auto at_best = S::eq(first, S::set1(best));
          const T runner_up = __builtin_popcount(S::bits(at_best)) >= 2
                                  ? best
                                  : S::reduce_max(S::max(second, S::select(at_best, minus_inf, first)));
          gk = best + runner_up;
        }
        group_key[g] = gk == gk ? gk : -kInf;  // +inf + -inf cannot occur here (keys finite or -inf)
      }
      for (size_t g = 0; g < c.n_group; ++g) {
        size_t beaten_by = 0;
        for (size_t h = 0; h < c.n_group; ++h)
          beaten_by += group_key[h] > group_key[g] || (group_key[h] == group_key[g] && h < g);
        T* gp = key + g * size;
        if (beaten_by >= c.topk_group) {
          std::fill(gp, gp + size, -kInf);
        } else if (mask) {
          for (size_t e = 0; e < size; ++e) kept_allowed += gp[e] > -kInf;
        } else {
          kept_allowed += size;
        }
      }
    }
    if (kept_allowed < k) return false;
  }

  T sel_key[kFastMaxK];
  select_top_k<T>(kp, n, k, t.ids, sel_key, top2_valid ? lane_top2 : nullptr, spans, c.topk_group, size);

  // Weights of the k selected.
  T ysel[kFastMaxK + Simd<T>::N], wsel[kFastMaxK + Simd<T>::N];
  for (size_t j = 0; j < k; ++j) ysel[j] = y[t.ids[j]];
  for (size_t j = k; j % Simd<T>::N != 0; ++j) ysel[j] = T(0);  // whole vectors: no uninitialised lanes
  const bool exp_of_selected = o.weights_from == RouteWeights::kSelected || (softmax && !all_scores);
  if (exp_of_selected) {
    // an infinite logit behind a finite key (a bias on a saturated score): the general path's rules
    for (size_t j = 0; j < k; ++j)
      if (!(ysel[j] > -kInf && ysel[j] < kInf)) return false;
    T m = -kInf;
    for (size_t j = 0; j < k; ++j) m = ysel[j] > m ? ysel[j] : m;
    score<T>(RouteScoring::kSoftmax, ysel, wsel, k, m);  // exp(y - m): normalised below
  } else if (all_scores) {
    for (size_t j = 0; j < k; ++j) wsel[j] = s[t.ids[j]];
  } else {
    score<T>(o.scoring, ysel, wsel, k, T(0));
  }
  finish_weights<T>(o, exp_of_selected, wsel, k);
  std::copy(wsel, wsel + k, t.weights);
  return true;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

template <class T>
void route_token(const RouteConfig<T>& c, const RouteToken<T>& t, void* scratch) {
  const size_t n = c.experts;
  double* wsel = static_cast<double*>(scratch);
  T* y = reinterpret_cast<T*>(wsel + c.k);
  T* s = y + n;
  T* key = s + n;
  T* group_key = key + n;
  uint8_t* cls = reinterpret_cast<uint8_t*>(group_key + c.n_group);
  uint8_t* group_kept = cls + n;
  // Transformed logits.
  const T* x = t.x;
  const RouteOptions& o = c.options;
  if (o.noise != RouteNoise::kNone) {
    for (size_t e = 0; e < n; ++e) {
      const double scale = t.noise_std ? static_cast<double>(t.noise_std[e]) : o.noise_std;
      y[e] = static_cast<T>(noisy_logit(static_cast<double>(x[e]), scale, o.noise, o.seed, t.token, e));
    }
    x = y;
  }
  const bool identity = c.softcap == T(0) && o.activation == RouteActivation::kNone && c.temperature == T(1);
  if (identity && o.noise == RouteNoise::kNone) {
    // the logits are the transformed logits: no copy on the fast path
    if (route_token_fast<T>(c, t, x, s, key, group_key)) return;
  }
  if (!identity || x != y) transform<T>(c, x, y, n);
  if (!route_token_fast<T>(c, t, y, s, key, group_key))
    route_token_general<T>(c, t, wsel, y, s, key, group_key, cls, group_kept);
}


// Tokens N at a time, one per lane: the N rows are transposed into E vectors (expert e of every
// token; whole N x N blocks by the layer's transpose), and the k best keys per lane are kept in
// (key descending, id ascending) order, branch-free, with k a compile-time constant so the slots
// stay in registers. float32 with k >= 4 on a SIMD layer: keys and ids packed into integers,
// groups sorted by a network and merged (below; 33 ns a token at E = 64, k = 8 on one Zen 4 core);
// otherwise a vertical insertion network, experts entering in id order below every kept key >=
// their own (E k / N compares and 4 E k / N blends a token; 48 ns at E = 64, k = 8). The one-token
// path's threshold, compaction and ranking cost a fixed ~400 cycles a token, so the crossover is
// past E = 256. The same scores, keys and weight arithmetic as route_token_fast, lane-wise, so a
// token gets the same bits on either path. Lanes with a key that is not finite are routed again one
// token at a time (route_token), as are batches' last rows when fewer than N/4 remain.
// Compute-bound (the tile is L1-resident): judged by operation count.
inline float float_with_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline constexpr size_t kColumnMaxExperts = 256;
inline constexpr size_t kColumnMaxK = 8;

template <class T>
bool column_route_ok(const RouteConfig<T>& c) {
  const RouteOptions& o = c.options;
  const bool key_from_scores = c.bias || (c.n_group > 1 && o.group_score == GroupScore::kTop2Sum);
  const bool softmax = o.scoring == RouteScoring::kSoftmax;
  const bool need_z = softmax && o.weights_from == RouteWeights::kScores && !(o.renormalize && o.renormalize_eps == 0.0);
  // bias-shifted scores: a scores pass and a third blend per slot, so the crossover with the
  // one-token path comes earlier (measured, sigmoid + bias, k = 8: 77 against 154 ns a token at
  // E = 64, even at 128, 363 against 335 at 256)
  return c.experts <= (key_from_scores ? kColumnMaxExperts / 2 : kColumnMaxExperts) && c.k <= kColumnMaxK && o.noise == RouteNoise::kNone &&
         !(c.n_group > 1 && c.topk_group < c.n_group) && !(softmax && (key_from_scores || need_z));
}

template <class T>
void route_rows(const RouteConfig<T>& c, const T* x, ptrdiff_t ldx, size_t rows, uint64_t first_token, T* weights,
                ptrdiff_t ldw, int32_t* ids, ptrdiff_t ldi, void* scratch) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr size_t N = S::N;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const size_t n = c.experts;
  auto one_token = [&](size_t r) {
    route_token<T>(c, RouteToken<T>{x + ptrdiff_t(r) * ldx, nullptr, nullptr, nullptr, first_token + r,
                                    weights + ptrdiff_t(r) * ldw, ids + ptrdiff_t(r) * ldi},
                   scratch);
  };
  size_t r = 0;
  if (column_route_ok(c)) {
    const RouteOptions& o = c.options;
    const bool softmax = o.scoring == RouteScoring::kSoftmax;
    const bool key_from_scores = c.bias != nullptr;  // top2_sum groups are excluded above
    const bool exp_of_selected = o.weights_from == RouteWeights::kSelected || softmax;
    const bool identity = c.softcap == T(0) && o.activation == RouteActivation::kNone && c.temperature == T(1);
    alignas(64) T tile[kColumnMaxExperts * N], scores[kColumnMaxExperts * N];
    alignas(64) T out_w[kColumnMaxK * N], out_id[kColumnMaxK * N], pad[kColumnMaxExperts * N];
    // k as a constant: the k slots of each array stay in registers, the slot loops unrolled
    auto columns = [&](auto k_constant) {
      constexpr size_t k = decltype(k_constant)::value;
      // N tokens from `src` (row stride ld), of which the first `lanes` are rows r.. of the output
      auto block = [&](const T* src, ptrdiff_t ld, size_t lanes) {
        transpose_rows<T>(src, ld, n, tile);
        if (!identity) transform<T>(c, tile, tile, n * N);
        if (key_from_scores) score<T>(o.scoring, tile, scores, n * N, T(0));  // not softmax (see column_route_ok)
        V id_best[kColumnMaxK], y_best[kColumnMaxK];
        const V zero = S::zero();
        V poison = zero;  // + key * 0: stays 0 while every key is finite, NaN after an inf or a NaN
        auto mul_add = [](V a, V b, V c) __attribute__((always_inline)) {
          if constexpr (S::N == 1) {
            return a * b + c;  // the baseline has no FMA instruction
          } else {
            return S::fma(a, b, c);
          }
        };
        auto key_of = [&](size_t e) __attribute__((always_inline)) {
          return key_from_scores ? S::add(S::load(scores + e * N), S::set1(c.bias[e])) : S::load(tile + e * N);
        };
        auto ambiguous = S::ne(zero, zero);  // lanes whose packed keys may rank differently from the keys
        bool selected = false;
        // (a generic lambda: layers without packed keys never see their operations)
        auto packed_selection = [&](auto layer) __attribute__((always_inline)) {
          using P = decltype(layer);
          using PV = typename P::V;
          // Key and id packed in one integer lane (the layer's pack_key: the key's upper 24 bits, then
          // 255 - id), so that a compare-exchange is two integer operations (max and min) and no blend.
          // Groups of G = 4 or 8 experts are sorted by a network (5 or 19 compare-exchanges) and merged
          // into the running sorted top G: the G larger of the pairs (top[j], group[G - 1 - j]) form a
          // bitonic sequence, sorted by log2 G half-cleaners; the smaller ones' largest so far is the
          // (G + 1)-th best, to check the k-th when k = G. About half the operations of inserting each
          // expert into k + 1 slots. Packed order is the exact order unless two of the k + 1 best
          // share a bucket with different low bits: such lanes (when any key of the lane has low
          // bits; bfloat16 and float16 logits never do) are routed again one token at a time, as are
          // non-finite ones. The selected logits come back from the tile by id, with their own bits
          // (-0 included).
          constexpr size_t G = k <= 4 ? 4 : 8;
          const PV lowest = P::set1(T(-0.0));  // the bits of INT32_MIN, below every packed key
          auto exchange = [](PV& a, PV& b) __attribute__((always_inline)) {  // a, b = max, min
            const PV hi = P::key_max(a, b);
            b = P::key_min(a, b);
            a = hi;
          };
          PV best[G], next = lowest, low_bits = zero;
          for (size_t j = 0; j < G; ++j) best[j] = lowest;  // overwritten by the first group
          for (size_t e0 = 0; e0 < n; e0 += G) {
            PV group[G];
            for (size_t j = 0; j < G; ++j) {
              const size_t e = e0 + j;
              if (e >= n) {
                group[j] = lowest;
                continue;
              }
              const PV key = key_of(e);
              poison = mul_add(key, zero, poison);
              low_bits = P::or_bits(low_bits, key);
              group[j] = P::pack_key(key, P::set1(float_with_bits(static_cast<uint32_t>(255 - e))));
            }
            if constexpr (G == 4) {
              exchange(group[0], group[1]), exchange(group[2], group[3]);
              exchange(group[0], group[2]), exchange(group[1], group[3]);
              exchange(group[1], group[2]);
            } else {
              exchange(group[0], group[2]), exchange(group[1], group[3]), exchange(group[4], group[6]), exchange(group[5], group[7]);
              exchange(group[0], group[4]), exchange(group[1], group[5]), exchange(group[2], group[6]), exchange(group[3], group[7]);
              exchange(group[0], group[1]), exchange(group[2], group[3]), exchange(group[4], group[5]), exchange(group[6], group[7]);
              exchange(group[2], group[4]), exchange(group[3], group[5]);
              exchange(group[1], group[4]), exchange(group[3], group[6]);
              exchange(group[1], group[2]), exchange(group[3], group[4]), exchange(group[5], group[6]);
            }
            if (e0 == 0) {
              for (size_t j = 0; j < G; ++j) best[j] = group[j];
              continue;
            }
            for (size_t j = 0; j < G; ++j) {
              if (k == G) next = P::key_max(next, P::key_min(best[j], group[G - 1 - j]));
              best[j] = P::key_max(best[j], group[G - 1 - j]);
            }
            for (size_t h = G / 2; h >= 1; h /= 2)
              for (size_t j = 0; j < G; ++j)
                if (!(j & h)) exchange(best[j], best[j + h]);
          }
          for (size_t j = 0; j < k; ++j) ambiguous = P::mask_or(ambiguous, P::same_bucket(best[j], j + 1 < G ? best[j + 1] : next));
          ambiguous = P::mask_and(ambiguous, P::low_bits_nonzero(low_bits));
          for (size_t j = 0; j < k; ++j) {
            id_best[j] = P::unpack_id(best[j]);
            y_best[j] = P::gather_column(tile, id_best[j]);
          }
        };
        // packed keys where the selection outweighs their fixed costs (packing, gathers, the check):
        // measured on Zen 4, slower at E k < 64, even at 96, faster beyond
        if constexpr (HasPackedKeys<S>::value && k >= 3)
          if (n * k >= 96) {
            packed_selection(S{});
            selected = true;
          }
        if (!selected) {
          V key_best[kColumnMaxK];
          for (size_t j = 0; j < k; ++j) key_best[j] = S::set1(-kInf), id_best[j] = zero, y_best[j] = zero;
          // Experts enter in id order. The new entry's slot is below every kept key >= its own (equal
          // keys have lower ids, so they stay first): stay[j] = key_best[j] >= key holds for a prefix
          // of the slots (they are sorted), the entry lands in the first slot where it fails and the
          // slots below shift down by one. Two selects per slot and array; no chain through the slots.
          auto insert = [&](V key, V id, V y, bool track_y) __attribute__((always_inline)) {
            // from the bottom slot up, so that slot j - 1 still holds its old entry
            auto stay = S::le(key, key_best[k - 1]);
#pragma GCC unroll 8
            for (size_t j = k - 1; j >= 1; --j) {
              const auto stay_above = S::le(key, key_best[j - 1]);
              key_best[j] = S::select(stay, key_best[j], S::select(stay_above, key, key_best[j - 1]));
              id_best[j] = S::select(stay, id_best[j], S::select(stay_above, id, id_best[j - 1]));
              if (track_y) y_best[j] = S::select(stay, y_best[j], S::select(stay_above, y, y_best[j - 1]));
              stay = stay_above;
            }
            key_best[0] = S::select(stay, key_best[0], key);
            id_best[0] = S::select(stay, id_best[0], id);
            if (track_y) y_best[0] = S::select(stay, y_best[0], y);
          };
          const V one = S::set1(T(1));
          V id = zero;  // expert e's id in every lane (exact: E < 2^24)
          for (size_t e = 0; e < n; ++e, id = S::add(id, one)) {
            const V key = key_of(e);
            poison = mul_add(key, zero, poison);
            if (key_from_scores) {
              insert(key, id, S::load(tile + e * N), true);
            } else {  // the key is the logit: y_best is key_best
              insert(key, id, key, false);
            }
          }
          if (!key_from_scores)
            for (size_t j = 0; j < k; ++j) y_best[j] = key_best[j];
        }
        auto bad = S::mask_or(S::ne(poison, poison), ambiguous);  // a non-finite key in the lane, or ambiguous
        // the weights, lane-wise as route_token_fast and finish_weights compute them per token
        V w[kColumnMaxK];
        if (exp_of_selected) {  // lanes with an infinite selected logit: the general path (see there)
          for (size_t j = 0; j < k; ++j)
            bad = S::mask_or(bad, S::not_le(S::abs(y_best[j]), S::set1(std::numeric_limits<T>::max())));
          V m = y_best[0];
          for (size_t j = 1; j < k; ++j) m = S::max(m, y_best[j]);
          for (size_t j = 0; j < k; ++j) w[j] = vexp<T>(S::sub(y_best[j], m));
        } else {
          alignas(64) T ys[kColumnMaxK * N], ws[kColumnMaxK * N];
          for (size_t j = 0; j < k; ++j) S::store(ys + j * N, y_best[j]);
          score<T>(o.scoring, ys, ws, k * N, T(0));
          for (size_t j = 0; j < k; ++j) w[j] = S::load(ws + j * N);
        }
        V wsum = S::zero();
        for (size_t j = 0; j < k; ++j) wsum = S::add(wsum, w[j]);
        V divisor = S::set1(T(1));
        if (exp_of_selected) {
          divisor = wsum;
          wsum = S::set1(T(1));
        }
        const V total = S::add(wsum, S::set1(static_cast<T>(o.renormalize_eps)));
        if (o.renormalize) divisor = S::select(S::ne(total, S::zero()), S::mul(divisor, total), divisor);
        const V scale = S::set1(static_cast<T>(o.scaling_factor));
        for (size_t j = 0; j < k; ++j) {
          S::store(out_w + j * N, S::mul(S::div(w[j], divisor), scale));
          S::store(out_id + j * N, id_best[j]);
        }
        for (size_t l = 0; l < lanes; ++l)
          for (size_t j = 0; j < k; ++j) {
            weights[ptrdiff_t(r + l) * ldw + ptrdiff_t(j)] = out_w[j * N + l];
            ids[ptrdiff_t(r + l) * ldi + ptrdiff_t(j)] = static_cast<int32_t>(out_id[j * N + l]);
          }
        const unsigned in_use = lanes == N ? ~0u : (1u << lanes) - 1u;
        for (unsigned b = S::bits(bad) & in_use; b; b &= b - 1) one_token(r + static_cast<size_t>(__builtin_ctz(b)));
      };
      for (; r + N <= rows; r += N) block(x + ptrdiff_t(r) * ldx, ldx, N);
      if (rows - r >= (N + 3) / 4) {  // the last rows, padded with copies of the last one (their lanes are
                                      // not written); fewer go one at a time (a decode step's token)
        for (size_t l = 0; l < N; ++l) {
          const T* row = x + ptrdiff_t(std::min(r + l, rows - 1)) * ldx;
          std::copy(row, row + n, pad + l * n);
        }
        block(pad, ptrdiff_t(n), rows - r);
        r = rows;
      }
    };
    switch (c.k) {
      case 1: columns(std::integral_constant<size_t, 1>{}); break;
      case 2: columns(std::integral_constant<size_t, 2>{}); break;
      case 3: columns(std::integral_constant<size_t, 3>{}); break;
      case 4: columns(std::integral_constant<size_t, 4>{}); break;
      case 5: columns(std::integral_constant<size_t, 5>{}); break;
      case 6: columns(std::integral_constant<size_t, 6>{}); break;
      case 7: columns(std::integral_constant<size_t, 7>{}); break;
      default: columns(std::integral_constant<size_t, kColumnMaxK>{}); break;
    }
  }
  for (; r < rows; ++r) one_token(r);
}

template <class T>
RouteKernels<T> make_route_kernels() {
  RouteKernels<T> k{};
  k.route_token = route_token<T>;
  k.route_rows = route_rows<T>;
  return k;
}

}  // namespace route_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
