// route: argument checks, operands declared to the row driver (logits and the optional per-expert
// views as rows, weights and ids as k values per row), the forced-expert pre-check, and one kernel
// call per token (route_kernels-inl.h).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "logitkit/error.h"
#include "logitkit/route.h"
#include "logitkit/softmax.h"
#include "route/route_kernels.h"
#include "runtime/bad_row.h"
#include "runtime/invalid.h"
#include "runtime/kernel_table.h"
#include "runtime/row_driver.h"

namespace logitkit {
namespace {

// An optional per-expert view as a row operand: (E,) broadcast over the tokens (stride 0), or
// the logits' own shape. Returns an empty view for an empty one.
template <class U, class T>
ArrayView<const U> rows_like(ArrayView<const U> v, const ArrayView<const T>& logits, const char* name) {
  if (v.data == nullptr && v.ndim == 0) return v;
  const int64_t experts = logits.ndim ? logits.shape[logits.ndim - 1] : 0;
  if (v.ndim == 1 && logits.ndim > 1) {
    if (v.shape[0] != experts)
      invalid(name, "has " + std::to_string(v.shape[0]) + " entries for " + std::to_string(experts) + " experts");
    ArrayView<const U> b = v;
    b.ndim = logits.ndim;
    for (int d = 0; d < logits.ndim; ++d) {
      b.shape[d] = logits.shape[d];
      b.strides[d] = 0;
    }
    b.strides[logits.ndim - 1] = v.strides[0];
    return b;
  }
  return v;
}

template <class T>
void route_impl(ArrayView<const T> logits, ArrayView<T> weights, ArrayView<int32_t> ids, int64_t k,
                const RouteOptions& o, ArrayView<const T> bias, ArrayView<const uint8_t> mask,
                ArrayView<const uint8_t> force, ArrayView<const T> noise_std) {
  RowDriver d(-1);
  const int kX = d.input(logits, "logits");
  if (logits.ndim == 0) invalid("logits", "needs an experts axis (got a 0-d array)");
  if (k < 1) invalid("k", "must be >= 1, got " + std::to_string(k));
  const int kW = d.output(weights, "weights", RowExtent::kK, k);
  const int kIds = d.output(ids, "ids", RowExtent::kK, k);
  const bool masked = mask.data != nullptr || mask.ndim != 0;
  const bool forced = force.data != nullptr || force.ndim != 0;
  const bool per_expert_std = noise_std.data != nullptr || noise_std.ndim != 0;
  const int kMask = masked ? d.input(rows_like(mask, logits, "expert_mask"), "expert_mask") : -1;
  const int kForce = forced ? d.input(rows_like(force, logits, "force"), "force") : -1;
  const int kStd = per_expert_std ? d.input(rows_like(noise_std, logits, "noise_std"), "noise_std") : -1;
  d.check();
  const int64_t experts = d.n();
  if (k < 1 || k > experts)
    invalid("k", "must be in [1, " + std::to_string(experts) + "] for " + std::to_string(experts) + " experts, got " +
                     std::to_string(k));
  if (experts > INT32_MAX) invalid("logits", "more than 2^31 - 1 experts");

  RouteConfig<T> c;
  c.experts = static_cast<size_t>(experts);
  c.k = static_cast<size_t>(k);
  c.options = o;
  // The options arrive as double and apply in T: option_in_compute_dtype refuses what T cannot hold.
  if (!(o.temperature > 0.0) || !std::isfinite(o.temperature))
    invalid("temperature", "must be a finite number > 0, got " + shortest_repr(o.temperature));
  c.temperature = option_in_compute_dtype<T>(o.temperature, "temperature", true);
  c.softcap = checked_softcap<T>(o.softcap);
  if (!(o.renormalize_eps >= 0.0) || !std::isfinite(o.renormalize_eps))
    invalid("renormalize_eps", "must be a finite number >= 0, got " + shortest_repr(o.renormalize_eps));
  option_in_compute_dtype<T>(o.renormalize_eps, "renormalize_eps");
  if (!std::isfinite(o.scaling_factor))
    invalid("scaling_factor", "must be finite, got " + shortest_repr(o.scaling_factor));
  option_in_compute_dtype<T>(o.scaling_factor, "scaling_factor");
  if (o.noise != RouteNoise::kNone) {
    if (!(o.noise_std >= 0.0) || !std::isfinite(o.noise_std))
      invalid("noise_std", "must be a finite number >= 0, got " + shortest_repr(o.noise_std));
    option_in_compute_dtype<T>(o.noise_std, "noise_std");
  }
  if (static_cast<unsigned>(o.scoring) > static_cast<unsigned>(RouteScoring::kNone))
    invalid("scoring", "not a RouteScoring value");
  if (static_cast<unsigned>(o.activation) > static_cast<unsigned>(RouteActivation::kRelu))
    invalid("activation", "not a RouteActivation value");
  if (static_cast<unsigned>(o.weights_from) > static_cast<unsigned>(RouteWeights::kSelected))
    invalid("weights_from", "not a RouteWeights value");
  if (static_cast<unsigned>(o.group_score) > static_cast<unsigned>(GroupScore::kTop2Sum))
    invalid("group_score", "not a GroupScore value");
  if (static_cast<unsigned>(o.noise) > static_cast<unsigned>(RouteNoise::kJitter))
    invalid("noise", "not a RouteNoise value");
  if (o.n_group < 1 || experts % o.n_group != 0)
    invalid("n_group", "must be >= 1 and divide the " + std::to_string(experts) + " experts, got " +
                           std::to_string(o.n_group));
  const int64_t topk_group = o.topk_group == 0 ? o.n_group : o.topk_group;
  if (topk_group < 1 || topk_group > o.n_group)
    invalid("topk_group", "must be in [1, n_group = " + std::to_string(o.n_group) + "], got " +
                              std::to_string(o.topk_group));
  if (topk_group * (experts / o.n_group) < k)
    invalid("topk_group", std::to_string(topk_group) + " groups of " + std::to_string(experts / o.n_group) +
                              " experts hold fewer than k = " + std::to_string(k));
  c.n_group = static_cast<size_t>(o.n_group);
  c.topk_group = static_cast<size_t>(topk_group);

  std::vector<T> bias_values;
  if (bias.data != nullptr || bias.ndim != 0) {
    if (bias.ndim != 1 || bias.shape[0] != experts)
      invalid("bias", "must have shape (" + std::to_string(experts) + ",), one value per expert");
    bias_values.resize(c.experts);
    for (size_t e = 0; e < c.experts; ++e) {
      bias_values[e] = bias.data[static_cast<int64_t>(e) * bias.strides[0]];
      if (!std::isfinite(bias_values[e]))
        invalid("bias", "entry " + std::to_string(e) + " is " + shortest_repr(static_cast<double>(bias_values[e])));
    }
    c.bias = bias_values.data();
  }

  if (forced) {  // at most k forced experts per token, none of them masked: checked before any write
    RowDriver pre(-1);
    pre.input(logits, "logits", RowExtent::kRow, 0, RowRead::kStrided);
    const int kF = pre.input(rows_like(force, logits, "force"), "force");
    const int kM = masked ? pre.input(rows_like(mask, logits, "expert_mask"), "expert_mask") : -1;
    BadRow bad;
    pre.run([&](const RowBatch& b) {
      for (size_t r = 0; r < b.rows; ++r) {
        const uint8_t* f = b.row<const uint8_t>(kF, r);
        const uint8_t* m = masked ? b.row<const uint8_t>(kM, r) : nullptr;
        size_t count = 0;
        for (size_t e = 0; e < b.n; ++e) {
          if (!f[e]) continue;
          ++count;
          if (m && !m[e]) bad.report(b.first_row + int64_t(r), "expert " + std::to_string(e) + " is forced and masked");
        }
        if (count > c.k)
          bad.report(b.first_row + int64_t(r),
                     std::to_string(count) + " forced experts for k = " + std::to_string(c.k));
      }
    });
    bad.throw_if_any("force");
  }

  const RouteKernels<T>& kern = kernels().route.get<T>();
  RowPolicy policy;
  policy.scratch_bytes = route_scratch_bytes<T>(c.experts, c.k, c.n_group);
  // Per token: a few passes over E plus the selection; weigh rows so tasks stay ~size-based.
  policy.work_per_row = 4 * experts + 8 * k;
  d.run(
      [&](const RowBatch& b) {
        if (!masked && !forced && !per_expert_std) {
          kern.route_rows(c, b.data<const T>(kX), b.ld[kX], b.rows, static_cast<uint64_t>(b.first_row),
                          b.data<T>(kW), b.ld[kW], b.data<int32_t>(kIds), b.ld[kIds], b.scratch);
          return;
        }
        for (size_t r = 0; r < b.rows; ++r) {
          RouteToken<T> t;
          t.x = b.row<const T>(kX, r);
          t.mask = masked ? b.row<const uint8_t>(kMask, r) : nullptr;
          t.force = forced ? b.row<const uint8_t>(kForce, r) : nullptr;
          t.noise_std = per_expert_std ? b.row<const T>(kStd, r) : nullptr;
          t.token = static_cast<uint64_t>(b.first_row) + r;
          t.weights = b.row<T>(kW, r);
          t.ids = b.row<int32_t>(kIds, r);
          kern.route_token(c, t, b.scratch);
        }
      },
      policy);
}

template <class T>
void expert_choice_impl(ArrayView<const T> logits, ArrayView<T> weights, ArrayView<int32_t> tokens, int64_t capacity) {
  if (logits.ndim != 2) invalid("logits", "must have shape (tokens, experts)");
  const int64_t T_ = logits.shape[0], E = logits.shape[1];
  if (capacity < 1 || capacity > T_)
    invalid("capacity", "must be in [1, " + std::to_string(T_) + "] for " + std::to_string(T_) + " tokens, got " +
                            std::to_string(capacity));
  std::vector<T> probs(static_cast<size_t>(T_ * E));
  softmax<T>(logits, ArrayView<T>::contiguous(probs.data(), {T_, E}), -1);
  ArrayView<const T> by_expert;  // (E, T) view of the scores
  by_expert.data = probs.data();
  by_expert.ndim = 2;
  by_expert.shape[0] = E, by_expert.shape[1] = T_;
  by_expert.strides[0] = 1, by_expert.strides[1] = E;
  RouteOptions o;
  o.scoring = RouteScoring::kNone;
  route_impl<T>(by_expert, weights, tokens, capacity, o, {}, {}, {}, {});
}

}  // namespace

#define LOGITKIT_SPECIALIZE(T)                                                                             \
  template <>                                                                                              \
  void route<T>(InputView<T> logits, ArrayView<T> weights, ArrayView<int32_t> ids, int64_t k,              \
                const RouteOptions& options, ArrayView<const T> bias, ArrayView<const uint8_t> expert_mask, \
                ArrayView<const uint8_t> force, ArrayView<const T> noise_std) {                            \
    route_impl<T>(logits, weights, ids, k, options, bias, expert_mask, force, noise_std);                  \
  }                                                                                                        \
  template <>                                                                                              \
  void expert_choice<T>(InputView<T> logits, ArrayView<T> weights, ArrayView<int32_t> tokens, int64_t capacity) { \
    expert_choice_impl<T>(logits, weights, tokens, capacity);                                              \
  }
LOGITKIT_SPECIALIZE(float)
LOGITKIT_SPECIALIZE(double)
#undef LOGITKIT_SPECIALIZE

}  // namespace logitkit
