// MoE data movement and auxiliary losses (logitkit/moe.h): dispatch plans by a chunked, stable
// counting sort; permute / unpermute (row copies and the combine kernel, moe_kernels-inl.h); the
// balancing losses and their gradients; contrastive logits. Work is split into fixed-size chunks
// (never by thread count) and every floating-point sum runs in a fixed order.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "logitkit/error.h"
#include "logitkit/moe.h"
#include "logitkit/softmax.h"
#include "moe/moe_kernels.h"
#include "runtime/bad_row.h"
#include "runtime/invalid.h"
#include "runtime/kernel_table.h"
#include "runtime/row_driver.h"
#include "runtime/thread_pool.h"

namespace logitkit {
namespace {

std::string shape_of(int ndim, const int64_t* shape) {
  std::string s = "(";
  for (int d = 0; d < ndim; ++d) s += (d ? ", " : "") + std::to_string(shape[d]);
  return s + (ndim == 1 ? ",)" : ")");
}

template <class U>
void require_shape(const ArrayView<U>& v, std::initializer_list<int64_t> shape, const char* name) {
  bool ok = v.ndim == static_cast<int>(shape.size()) && (v.data != nullptr || v.size() == 0);
  int d = 0;
  for (int64_t s : shape) ok = ok && v.shape[d++] == s;
  if (!ok) {
    std::vector<int64_t> want(shape);
    invalid(name, "must have shape " + shape_of(static_cast<int>(want.size()), want.data()) + ", got " +
                      shape_of(v.ndim, v.shape));
  }
}

template <class U>
void require_vector(const ArrayView<U>& v, int64_t min_length, const char* name) {
  if (v.ndim != 1 || v.shape[0] < min_length || (v.shape[0] > 1 && v.strides[0] != 1) ||
      (v.data == nullptr && v.shape[0] > 0))
    invalid(name, "must be a contiguous 1-d array of at least " + std::to_string(min_length) + " entries, got shape " +
                      shape_of(v.ndim, v.shape));
}

// Element (t, j) of a 2-d view.
template <class U>
U& at(const ArrayView<U>& v, int64_t t, int64_t j) {
  return v.data[t * v.strides[0] + j * v.strides[1]];
}

bool has(const void* data, int ndim) { return data != nullptr || ndim != 0; }

// Fixed-size chunks of pairs for the counting sort: the chunk grid, not the thread count, sets the
// order of every write, so the plan is the same for any thread count.
constexpr int64_t kPairChunk = int64_t{1} << 14;

// The expert ids (T, k) as a flat, validated int32 vector in pair order.
std::vector<int32_t> flat_ids(const ArrayView<const int32_t>& experts, int64_t num_experts) {
  const int64_t tokens = experts.shape[0], k = experts.shape[1];
  std::vector<int32_t> ids(static_cast<size_t>(tokens * k));
  BadRow bad;
  parallel_for(static_cast<size_t>((tokens + 1023) / 1024), [&](size_t c) {
    const int64_t t0 = int64_t(c) * 1024, t1 = std::min(tokens, t0 + 1024);
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t j = 0; j < k; ++j) {
        const int32_t e = at(experts, t, j);
        if (e < 0 || e >= num_experts)
          bad.report(t, "expert id " + std::to_string(e) + " is out of range [0, " + std::to_string(num_experts) + ")");
        ids[static_cast<size_t>(t * k + j)] = e;
      }
  });
  bad.throw_if_any("experts");
  return ids;
}

// Stable counting sort of pair indices by expert: order[base[e] .. base[e] + count[e]) holds the
// pairs routed to e in increasing pair index (token, then slot).
// Per-chunk histograms of the ids: hist[c * E + e] counts expert e in chunk c.
std::vector<int64_t> chunk_histograms(const std::vector<int32_t>& ids, int64_t num_experts) {
  const int64_t pairs = static_cast<int64_t>(ids.size());
  const size_t chunks = static_cast<size_t>((pairs + kPairChunk - 1) / kPairChunk), E = static_cast<size_t>(num_experts);
  std::vector<int64_t> hist(chunks * E, 0);
  parallel_for(chunks, [&](size_t c) {
    int64_t* h = hist.data() + c * E;
    const int64_t p1 = std::min(pairs, int64_t(c + 1) * kPairChunk);
    for (int64_t p = int64_t(c) * kPairChunk; p < p1; ++p) ++h[ids[static_cast<size_t>(p)]];
  });
  return hist;
}

void sort_pairs(const std::vector<int32_t>& ids, int64_t num_experts, std::vector<int64_t>& counts,
                std::vector<int32_t>& order, std::vector<int64_t>& base) {
  const int64_t pairs = static_cast<int64_t>(ids.size());
  const size_t chunks = static_cast<size_t>((pairs + kPairChunk - 1) / kPairChunk), E = static_cast<size_t>(num_experts);
  std::vector<int64_t> hist = chunk_histograms(ids, num_experts);
  counts.assign(E, 0);
  base.assign(E + 1, 0);
  for (size_t e = 0; e < E; ++e) {
    int64_t running = base[e];
    for (size_t c = 0; c < chunks; ++c) {  // hist becomes each chunk's start for expert e
      const int64_t h = hist[c * E + e];
      hist[c * E + e] = running;
      running += h;
    }
    counts[e] = running - base[e];
    base[e + 1] = running;
  }
  order.resize(static_cast<size_t>(pairs));
  parallel_for(chunks, [&](size_t c) {
    int64_t* next = hist.data() + c * E;
    const int64_t p1 = std::min(pairs, int64_t(c + 1) * kPairChunk);
    for (int64_t p = int64_t(c) * kPairChunk; p < p1; ++p) order[static_cast<size_t>(next[ids[static_cast<size_t>(p)]]++)] = static_cast<int32_t>(p);
  });
}

template <class T>
int64_t dispatch_impl(ArrayView<const int32_t> experts, int64_t num_experts, const DispatchOptions& o,
                      const DispatchPlanView& plan, ArrayView<const T> weights) {
  if (experts.ndim != 2) invalid("experts", "must have shape (tokens, k), got " + shape_of(experts.ndim, experts.shape));
  if (num_experts < 1) invalid("num_experts", "must be >= 1, got " + std::to_string(num_experts));
  const int64_t tokens = experts.shape[0], k = experts.shape[1], pairs = tokens * k;
  if (pairs > INT32_MAX) invalid("experts", "more than 2^31 - 1 (token, slot) pairs");
  const int64_t capacity = dispatch_capacity(tokens, k, num_experts, o);
  const bool by_probs = o.drop_policy == DropPolicy::kProbs;
  if (o.drop_policy != DropPolicy::kPosition && !by_probs) invalid("drop_policy", "not a DropPolicy value");
  if (by_probs && capacity >= 0) {
    if (!has(weights.data, weights.ndim)) invalid("weights", "the drop policy 'probs' needs the routing weights");
    require_shape(weights, {tokens, k}, "weights");
  }
  const int64_t bound = dispatch_slot_bound(pairs, num_experts, o.block_size);
  require_vector(plan.counts, num_experts, "counts");
  require_vector(plan.kept, num_experts, "kept");
  require_vector(plan.offsets, num_experts + 1, "offsets");
  require_shape(plan.position, {tokens, k}, "position");
  require_vector(plan.slot_token, bound, "slot_token");
  require_vector(plan.slot_pair, bound, "slot_pair");
  require_vector(plan.block_expert, bound / o.block_size, "block_expert");

  const std::vector<int32_t> ids = flat_ids(experts, num_experts);
  std::vector<int64_t> counts, base;
  std::vector<int32_t> order;
  sort_pairs(ids, num_experts, counts, order, base);

  const size_t E = static_cast<size_t>(num_experts);
  const int64_t B = o.block_size;
  std::vector<int64_t> kept(E), offsets(E + 1, 0);
  for (size_t e = 0; e < E; ++e) {
    kept[e] = capacity < 0 ? counts[e] : std::min(counts[e], capacity);
    offsets[e + 1] = offsets[e] + (kept[e] + B - 1) / B * B;
  }
  const int64_t slots = offsets[E];
  // Over-capacity experts under kProbs keep their largest weights (NaN lowest, ties: lower pair),
  // then the kept pairs go back to pair order.
  if (by_probs && capacity >= 0) {
    parallel_for(E, [&](size_t e) {
      if (counts[e] <= capacity) return;
      int32_t* first = order.data() + base[e];
      auto w = [&](int32_t p) { return at(weights, p / k, p % k); };
      // a before b: a has a weight and b none (NaN, below -inf too), or the larger weight, or the
      // same weight (or both NaN) and the lower pair
      std::nth_element(first, first + capacity - 1, first + counts[e], [&](int32_t a, int32_t b) {
        const T wa = w(a), wb = w(b);
        const bool na = wa != wa, nb = wb != wb;
        if (na != nb) return nb;
        return (!na && wa > wb) || ((na || wa == wb) && a < b);
      });
      std::sort(first, first + capacity);
    });
  }
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < k; ++j) at(plan.position, t, j) = -1;
  parallel_for(E, [&](size_t e) {
    const int64_t o0 = offsets[e];
    for (int64_t r = 0; r < kept[e]; ++r) {
      const int32_t p = order[static_cast<size_t>(base[e] + r)];
      at(plan.position, p / k, p % k) = static_cast<int32_t>(o0 + r);
      plan.slot_token.data[o0 + r] = static_cast<int32_t>(p / k);
      plan.slot_pair.data[o0 + r] = p;
    }
    for (int64_t s = o0 + kept[e]; s < offsets[e + 1]; ++s) plan.slot_token.data[s] = plan.slot_pair.data[s] = -1;
    for (int64_t b = o0 / B; b < offsets[e + 1] / B; ++b) plan.block_expert.data[b] = static_cast<int32_t>(e);
  });
  for (size_t e = 0; e < E; ++e) {
    plan.counts.data[e] = counts[e];
    plan.kept.data[e] = kept[e];
    plan.offsets.data[e] = offsets[e];
  }
  plan.offsets.data[E] = slots;
  return slots;
}

// Column means of probs (T, E) contiguous, in a fixed order: blocks of 256 rows summed in row
// order, the blocks added in order.
template <class T>
std::vector<double> column_means(const std::vector<T>& probs, int64_t tokens, int64_t experts) {
  constexpr int64_t kBlock = 256;
  const size_t blocks = static_cast<size_t>((tokens + kBlock - 1) / kBlock), E = static_cast<size_t>(experts);
  std::vector<double> part(blocks * E, 0.0), mean(E, 0.0);
  parallel_for(blocks, [&](size_t b) {
    double* acc = part.data() + b * E;
    for (int64_t t = int64_t(b) * kBlock; t < std::min(tokens, int64_t(b + 1) * kBlock); ++t)
      for (size_t e = 0; e < E; ++e) acc[e] += static_cast<double>(probs[static_cast<size_t>(t) * E + e]);
  });
  for (size_t b = 0; b < blocks; ++b)
    for (size_t e = 0; e < E; ++e) mean[e] += part[b * E + e];
  for (double& m : mean) m /= static_cast<double>(tokens);
  return mean;
}

template <class T>
void check_logits_and_ids(const ArrayView<const T>& logits, const ArrayView<const int32_t>& experts) {
  if (logits.ndim != 2) invalid("logits", "must have shape (tokens, experts), got " + shape_of(logits.ndim, logits.shape));
  if (experts.ndim != 2 || experts.shape[0] != logits.shape[0])
    invalid("experts", "must have shape (" + std::to_string(logits.shape[0]) + ", k), got " +
                           shape_of(experts.ndim, experts.shape));
}

template <class T>
void check_grad(const ArrayView<T>& grad, const ArrayView<const T>& logits) {
  if (has(grad.data, grad.ndim)) require_shape(grad, {logits.shape[0], logits.shape[1]}, "grad");
}

template <class T>
std::vector<T> softmax_rows(const ArrayView<const T>& logits) {
  const int64_t tokens = logits.shape[0], experts = logits.shape[1];
  std::vector<T> probs(static_cast<size_t>(tokens * experts));
  softmax<T>(logits, ArrayView<T>::contiguous(probs.data(), {tokens, experts}), -1);
  return probs;
}

template <class T>
double load_balancing_impl(ArrayView<const T> logits, ArrayView<const int32_t> experts, BalanceNormalization norm,
                           double alpha, ArrayView<T> grad, double grad_output) {
  check_logits_and_ids(logits, experts);
  check_grad(grad, logits);
  if (norm != BalanceNormalization::kSwitch && norm != BalanceNormalization::kHfMixtral)
    invalid("normalization", "not a BalanceNormalization value");
  const int64_t tokens = logits.shape[0], E = logits.shape[1], k = experts.shape[1];
  if (tokens == 0) return std::numeric_limits<double>::quiet_NaN();
  const std::vector<int32_t> ids = flat_ids(experts, E);
  std::vector<double> f(static_cast<size_t>(E), 0.0);
  const std::vector<int64_t> hist = chunk_histograms(ids, E);
  for (size_t i = 0; i < hist.size(); ++i) f[i % static_cast<size_t>(E)] += static_cast<double>(hist[i]);
  const double per = norm == BalanceNormalization::kSwitch ? double(tokens) * double(k) : double(tokens);
  for (double& v : f) v /= per;
  const std::vector<T> probs = softmax_rows(logits);
  const std::vector<double> P = column_means(probs, tokens, E);
  BlockSum<double> loss;
  for (size_t e = 0; e < f.size(); ++e) loss.add(f[e] * P[e]);
  const double scale = alpha * double(E);
  if (has(grad.data, grad.ndim)) {  // d/dx_t = scale / T * p_t (f - <p_t, f>)
    const double g = grad_output * scale / double(tokens);
    parallel_for(static_cast<size_t>((tokens + 255) / 256), [&](size_t c) {
      for (int64_t t = int64_t(c) * 256; t < std::min(tokens, int64_t(c + 1) * 256); ++t) {
        const T* p = probs.data() + t * E;
        double dot = 0.0;
        for (int64_t e = 0; e < E; ++e) dot += double(p[e]) * f[static_cast<size_t>(e)];
        for (int64_t e = 0; e < E; ++e) at(grad, t, e) = static_cast<T>(g * double(p[e]) * (f[static_cast<size_t>(e)] - dot));
      }
    });
  }
  return scale * loss.value();
}

template <class T>
double sequence_balance_impl(ArrayView<const T> logits, ArrayView<const int32_t> experts, int64_t seq_len,
                             double alpha, ArrayView<T> grad, double grad_output) {
  check_logits_and_ids(logits, experts);
  check_grad(grad, logits);
  const int64_t tokens = logits.shape[0], E = logits.shape[1], k = experts.shape[1];
  if (seq_len < 1 || tokens % seq_len != 0)
    invalid("seq_len", "must be >= 1 and divide the " + std::to_string(tokens) + " tokens, got " + std::to_string(seq_len));
  const int64_t sequences = tokens / seq_len;
  if (sequences == 0) return std::numeric_limits<double>::quiet_NaN();
  const std::vector<int32_t> ids = flat_ids(experts, E);
  const bool with_grad = has(grad.data, grad.ndim);
  std::vector<double> seq_loss(static_cast<size_t>(sequences));
  const size_t En = static_cast<size_t>(E);
  parallel_for(static_cast<size_t>(sequences), [&](size_t b) {
    std::vector<double> sig(static_cast<size_t>(seq_len) * En), total(static_cast<size_t>(seq_len)), P(En, 0.0), f(En, 0.0);
    const int64_t t0 = int64_t(b) * seq_len;
    for (int64_t r = 0; r < seq_len; ++r) {
      double sum = 0.0;
      for (size_t e = 0; e < En; ++e) {
        const double x = static_cast<double>(at(logits, t0 + r, int64_t(e)));
        sum += sig[r * En + e] = 1.0 / (1.0 + std::exp(-x));
      }
      total[r] = sum;
      for (size_t e = 0; e < En; ++e) P[e] += sig[r * En + e] / sum;
      for (int64_t j = 0; j < k; ++j) f[static_cast<size_t>(ids[static_cast<size_t>((t0 + r) * k + j)])] += 1.0;
    }
    double l = 0.0;
    for (size_t e = 0; e < En; ++e) {
      P[e] /= double(seq_len);
      f[e] *= double(E) / (double(k) * double(seq_len));
      l += f[e] * P[e];
    }
    seq_loss[b] = alpha * l;
    if (!with_grad) return;
    // d L / d x_i = c sigma_i (1 - sigma_i) / sum sigma (f_i - sum_j f_j s'_j), c = alpha / (B S)
    const double c = grad_output * alpha / (double(sequences) * double(seq_len));
    for (int64_t r = 0; r < seq_len; ++r) {
      const double* s = sig.data() + r * En;
      double dot = 0.0;
      for (size_t e = 0; e < En; ++e) dot += f[e] * s[e] / total[r];
      for (size_t e = 0; e < En; ++e)
        at(grad, t0 + r, int64_t(e)) = static_cast<T>(c * s[e] * (1.0 - s[e]) / total[r] * (f[e] - dot));
    }
  });
  BlockSum<double> loss;
  for (double v : seq_loss) loss.add(v);
  return loss.value() / double(sequences);
}

template <class T>
double router_z_impl(ArrayView<const T> logits, ArrayView<T> grad, double grad_output) {
  if (logits.ndim != 2) invalid("logits", "must have shape (tokens, experts), got " + shape_of(logits.ndim, logits.shape));
  check_grad(grad, logits);
  const int64_t tokens = logits.shape[0], E = logits.shape[1];
  if (tokens == 0) return std::numeric_limits<double>::quiet_NaN();
  std::vector<T> lse(static_cast<size_t>(tokens));
  logsumexp<T>(logits, ArrayView<T>::contiguous(lse.data(), {tokens}), -1);
  std::vector<double> sq(lse.size());
  for (size_t t = 0; t < lse.size(); ++t) sq[t] = double(lse[t]) * double(lse[t]);
  const double loss = ordered_sum(sq.data(), tokens) / double(tokens);
  if (has(grad.data, grad.ndim)) {  // d/dx_t = 2 lse_t softmax(x_t) / T
    const std::vector<T> probs = softmax_rows(logits);
    const double c = 2.0 * grad_output / double(tokens);
    parallel_for(static_cast<size_t>((tokens + 255) / 256), [&](size_t b) {
      for (int64_t t = int64_t(b) * 256; t < std::min(tokens, int64_t(b + 1) * 256); ++t)
        for (int64_t e = 0; e < E; ++e)
          at(grad, t, e) = static_cast<T>(c * double(lse[static_cast<size_t>(t)]) * double(probs[static_cast<size_t>(t * E + e)]));
    });
  }
  return loss;
}

template <class T>
void contrastive_impl(ArrayView<const T> strong, ArrayView<const T> weak, ArrayView<T> out, double beta, double alpha) {
  RowDriver d(-1);
  const int kS = d.input(strong, "strong"), kW = d.input(weak, "weak"), kOut = d.output(out, "out");
  d.check();
  if (!std::isfinite(beta)) invalid("beta", "must be finite, got " + shortest_repr(beta));
  option_in_compute_dtype<T>(beta, "beta");
  if (!(alpha >= 0.0 && alpha <= 1.0)) invalid("alpha", "must be in [0, 1], got " + shortest_repr(alpha));
  const auto& sm = kernels().softmax.get<T>();
  const auto& mk = kernels().moe.get<T>();
  const size_t n = static_cast<size_t>(d.n());
  const T log_alpha = static_cast<T>(std::log(alpha));
  d.run([&](const RowBatch& b) {
    for (size_t r = 0; r < b.rows; ++r) {
      const T* s = b.row<const T>(kS, r);
      const T m = n ? sm.max(s, n) : T(0);
      mk.contrast(s, b.row<const T>(kW, r), b.row<T>(kOut, r), n, m + log_alpha, static_cast<T>(beta));
    }
  });
}

template <class T>
void unpermute_impl(ArrayView<const T> expert_out, ArrayView<const int32_t> position, ArrayView<const T> weights,
                    ArrayView<T> out) {
  // An empty expert_out (no slot, e.g. every pair dropped) has any strides (NumPy 2: zero).
  if (expert_out.ndim != 2 ||
      (expert_out.shape[0] > 0 && expert_out.shape[1] > 1 && expert_out.strides[1] != 1))
    invalid("expert_out", "must be 2-d (slots, hidden) with contiguous rows, got shape " +
                              shape_of(expert_out.ndim, expert_out.shape));
  if (position.ndim != 2) invalid("position", "must have shape (tokens, k), got " + shape_of(position.ndim, position.shape));
  const int64_t tokens = position.shape[0], k = position.shape[1], slots = expert_out.shape[0], H = expert_out.shape[1];
  require_shape(weights, {tokens, k}, "weights");
  require_shape(out, {tokens, H}, "out");
  if (tokens > 0 && H > 1 && out.strides[1] != 1) invalid("out", "must have contiguous rows");
  BadRow bad;
  parallel_for(static_cast<size_t>((tokens + 4095) / 4096), [&](size_t c) {
    for (int64_t t = int64_t(c) * 4096; t < std::min(tokens, int64_t(c + 1) * 4096); ++t)
      for (int64_t j = 0; j < k; ++j) {
        const int32_t s = at(position, t, j);
        if (s < -1 || s >= slots)
          bad.report(t, "slot " + std::to_string(s) + " is outside [-1, " + std::to_string(slots) + ")");
      }
  });
  bad.throw_if_any("position");
  const auto& mk = kernels().moe.get<T>();
  const int64_t per_task = std::max<int64_t>(1, kTaskElements / std::max<int64_t>(H * (k + 1), 1));
  parallel_for(static_cast<size_t>((tokens + per_task - 1) / per_task), [&](size_t c) {
    std::vector<const T*> rows(static_cast<size_t>(k));
    std::vector<T> w(static_cast<size_t>(k));
    for (int64_t t = int64_t(c) * per_task; t < std::min(tokens, int64_t(c + 1) * per_task); ++t) {
      size_t count = 0;
      for (int64_t j = 0; j < k; ++j) {
        const int32_t s = at(position, t, j);
        if (s < 0) continue;
        rows[count] = expert_out.data + s * expert_out.strides[0];
        w[count++] = at(weights, t, j);
      }
      T* o = out.data + t * out.strides[0];
      if (count == 0) {
        std::fill(o, o + H, T(0));
      } else {
        mk.combine(rows.data(), w.data(), count, o, static_cast<size_t>(H));
      }
    }
  });
}

template <class T>
void update_bias_impl(ArrayView<T> bias, ArrayView<const int64_t> counts, double rate) {
  if (bias.ndim != 1) invalid("bias", "must be 1-d (experts,), got shape " + shape_of(bias.ndim, bias.shape));
  const int64_t E = bias.shape[0];
  if (counts.ndim != 1 || counts.shape[0] != E)
    invalid("counts", "must have shape (" + std::to_string(E) + ",), got " + shape_of(counts.ndim, counts.shape));
  if (!std::isfinite(rate)) invalid("rate", "must be finite, got " + shortest_repr(rate));
  if (E == 0) return;
  double total = 0.0;
  for (int64_t e = 0; e < E; ++e) total += static_cast<double>(counts.data[e * counts.strides[0]]);
  const double mean = total / double(E);
  for (int64_t e = 0; e < E; ++e) {
    const double load = static_cast<double>(counts.data[e * counts.strides[0]]);
    const double sign = mean > load ? 1.0 : (mean < load ? -1.0 : 0.0);
    T& b = bias.data[e * bias.strides[0]];
    b = static_cast<T>(static_cast<double>(b) + rate * sign);
  }
}

}  // namespace

int64_t dispatch_slot_bound(int64_t pairs, int64_t experts, int64_t block_size) {
  if (block_size < 1) invalid("block_size", "must be >= 1, got " + std::to_string(block_size));
  int64_t padding, bound;
  if (__builtin_mul_overflow(experts, block_size - 1, &padding) || __builtin_add_overflow(pairs, padding, &bound))
    invalid("block_size", "the padded slot count overflows int64 (" + std::to_string(experts) + " experts, block size " +
                              std::to_string(block_size) + ")");
  return bound;
}

int64_t dispatch_capacity(int64_t tokens, int64_t k, int64_t experts, const DispatchOptions& o) {
  if (experts < 1) invalid("num_experts", "must be >= 1, got " + std::to_string(experts));
  if (tokens < 0 || k < 0)
    invalid("experts", "tokens and k must be >= 0, got " + std::to_string(tokens) + " and " + std::to_string(k));
  if (o.capacity < -1) invalid("capacity", "must be >= 0 (or -1: none), got " + std::to_string(o.capacity));
  if (!(o.capacity_factor >= 0.0) || !std::isfinite(o.capacity_factor))
    invalid("capacity_factor", "must be a finite number >= 0, got " + shortest_repr(o.capacity_factor));
  if (o.min_capacity < 0) invalid("min_capacity", "must be >= 0, got " + std::to_string(o.min_capacity));
  if (o.block_size < 1) invalid("block_size", "must be >= 1, got " + std::to_string(o.block_size));
  if (o.capacity >= 0) return o.capacity;
  if (!(o.capacity_factor > 0.0)) return -1;
  const double pairs = double(tokens) * double(k);
  if (pairs == 0) return o.min_capacity;  // a factor times no pairs (a huge one would form inf * 0)
  // no expert can receive more than tokens * k pairs, nor more than 2^62 (no buffer holds that
  // many): a larger capacity drops nothing, and the product would not fit an int64 (the conversion
  // is undefined behaviour beyond it; tokens * k alone can pass it, a fuzzer finding)
  return std::max<int64_t>(
      o.min_capacity,
      static_cast<int64_t>(std::min({std::ceil(o.capacity_factor * double(tokens) * double(k) / double(experts)), pairs,
                                     0x1p62})));
}

void expert_counts(ArrayView<const int32_t> experts, int64_t num_experts, ArrayView<int64_t> counts) {
  if (num_experts < 1) invalid("num_experts", "must be >= 1, got " + std::to_string(num_experts));
  require_vector(counts, num_experts, "counts");
  if (counts.shape[0] != num_experts) invalid("counts", "must have " + std::to_string(num_experts) + " entries");
  // Any shape: viewed as (rows, last extent).
  ArrayView<const int32_t> v2;
  v2.data = experts.data;
  v2.ndim = 2;
  if (experts.ndim == 0) {
    v2.shape[0] = v2.shape[1] = 1;
  } else {
    int64_t rows = 1;
    for (int d = 0; d + 1 < experts.ndim; ++d) rows *= experts.shape[d];
    // The leading dimensions merge into one row axis when those of extent > 1 nest exactly; unit
    // dimensions are skipped (their stride is arbitrary and must not become the row stride).
    int lead[kMaxDims];
    int n_lead = 0;
    for (int d = 0; d + 1 < experts.ndim; ++d)
      if (experts.shape[d] > 1) lead[n_lead++] = d;
    const bool mergeable = [&] {
      for (int i = 0; i + 1 < n_lead; ++i)
        if (experts.strides[lead[i]] != experts.strides[lead[i + 1]] * experts.shape[lead[i + 1]]) return false;
      return true;
    }();
    if (!mergeable) {  // copy through an index walk: rare layouts
      std::vector<int32_t> flat;
      flat.reserve(static_cast<size_t>(experts.size()));
      std::vector<int64_t> idx(static_cast<size_t>(experts.ndim), 0);
      for (int64_t i = 0; i < experts.size(); ++i) {
        int64_t off = 0;
        for (int d = 0; d < experts.ndim; ++d) off += idx[d] * experts.strides[d];
        flat.push_back(experts.data[off]);
        for (int d = experts.ndim - 1; d >= 0 && ++idx[d] == experts.shape[d]; --d) idx[d] = 0;
      }
      expert_counts(ArrayView<const int32_t>::contiguous(flat.data(), {static_cast<int64_t>(flat.size())}), num_experts,
                    counts);
      return;
    }
    v2.shape[0] = rows;
    v2.shape[1] = experts.shape[experts.ndim - 1];
    v2.strides[0] = n_lead > 0 ? experts.strides[lead[n_lead - 1]] : 0;
    v2.strides[1] = experts.strides[experts.ndim - 1];
  }
  const std::vector<int64_t> hist = chunk_histograms(flat_ids(v2, num_experts), num_experts);  // no sort needed
  for (int64_t e = 0; e < num_experts; ++e) counts.data[e] = 0;
  for (size_t i = 0; i < hist.size(); ++i) counts.data[static_cast<int64_t>(i) % num_experts] += hist[i];
}

void permute(const void* hidden, int64_t tokens, int64_t row_stride_bytes, ArrayView<const int32_t> slot_token,
             void* out, int64_t out_row_stride_bytes, int64_t row_bytes) {
  if (slot_token.ndim != 1) invalid("slot_token", "must be 1-d");
  if (row_bytes < 0) invalid("hidden", "negative row size");
  const int64_t slots = slot_token.shape[0];
  BadRow bad;
  for (int64_t s = 0; s < slots; ++s) {
    const int32_t t = slot_token.data[s * slot_token.strides[0]];
    if (t < -1 || t >= tokens) {
      bad.report(s, "token " + std::to_string(t) + " is outside [-1, " + std::to_string(tokens) + ")");
      break;
    }
  }
  bad.throw_if_any("plan");
  // Row copies (memcpy is the platform's SIMD copy); tasks of about 64 KiB.
  const int64_t per_task = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(row_bytes, 1));
  parallel_for(static_cast<size_t>((slots + per_task - 1) / per_task), [&](size_t c) {
    for (int64_t s = int64_t(c) * per_task; s < std::min(slots, int64_t(c + 1) * per_task); ++s) {
      const int32_t t = slot_token.data[s * slot_token.strides[0]];
      char* dst = static_cast<char*>(out) + s * out_row_stride_bytes;
      if (t < 0) {
        std::memset(dst, 0, static_cast<size_t>(row_bytes));
      } else {
        std::memcpy(dst, static_cast<const char*>(hidden) + t * row_stride_bytes, static_cast<size_t>(row_bytes));
      }
    }
  });
}

#define LOGITKIT_SPECIALIZE(T)                                                                                    \
  template <>                                                                                                     \
  int64_t dispatch<T>(ArrayView<const int32_t> experts, int64_t num_experts, const DispatchOptions& options,      \
                      const DispatchPlanView& plan, ArrayView<const T> weights) {                                  \
    return dispatch_impl<T>(experts, num_experts, options, plan, weights);                                        \
  }                                                                                                               \
  template <>                                                                                                     \
  void unpermute<T>(ArrayView<const T> expert_out, ArrayView<const int32_t> position, ArrayView<const T> weights, \
                    ArrayView<T> out) {                                                                           \
    unpermute_impl<T>(expert_out, position, weights, out);                                                        \
  }                                                                                                               \
  template <>                                                                                                     \
  double load_balancing_loss<T>(InputView<T> logits, ArrayView<const int32_t> experts, BalanceNormalization norm, \
                                double alpha, ArrayView<T> grad, double grad_output) {                            \
    return load_balancing_impl<T>(logits, experts, norm, alpha, grad, grad_output);                               \
  }                                                                                                               \
  template <>                                                                                                     \
  double sequence_balance_loss<T>(InputView<T> logits, ArrayView<const int32_t> experts, int64_t seq_len,         \
                                  double alpha, ArrayView<T> grad, double grad_output) {                          \
    return sequence_balance_impl<T>(logits, experts, seq_len, alpha, grad, grad_output);                          \
  }                                                                                                               \
  template <>                                                                                                     \
  double router_z_loss<T>(InputView<T> logits, ArrayView<T> grad, double grad_output) {                           \
    return router_z_impl<T>(logits, grad, grad_output);                                                           \
  }                                                                                                               \
  template <>                                                                                                     \
  void contrastive_logits<T>(InputView<T> strong, InputView<T> weak, ArrayView<T> out, double beta, double alpha) { \
    contrastive_impl<T>(strong, weak, out, beta, alpha);                                                          \
  }                                                                                                               \
  template <>                                                                                                     \
  void update_bias<T>(ArrayView<T> bias, ArrayView<const int64_t> counts, double rate) {                          \
    update_bias_impl<T>(bias, counts, rate);                                                                      \
  }
LOGITKIT_SPECIALIZE(float)
LOGITKIT_SPECIALIZE(double)
#undef LOGITKIT_SPECIALIZE

}  // namespace logitkit
