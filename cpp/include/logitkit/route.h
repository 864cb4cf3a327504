// Mixture-of-Experts top-k routing of the C++ API: one fused router per token (scoring, bias for
// selection, group-limited selection, masks, forced experts, training noise, renormalisation,
// routed scaling), exact and deterministic.
//
// Guarantees (tests/test_route.py checks each):
// - The k ids of a token are distinct and in [0, E), whatever the logits (NaN, -inf, all masked).
// - Selection ranks experts by their selection key, highest first, ties to the lower expert id
//   (and among groups, to the lower group id). The key is the score plus bias when a bias is
//   given or the group rule is kTop2Sum; otherwise the transformed logit itself, since every
//   scoring is increasing in it: experts whose scores round to the same float (sigmoid of 20 and
//   of 21) are still ranked by their logits rather than tied.
// - A NaN transformed logit means "no score": the expert ranks below every scored expert (-inf
//   included), takes no share of a softmax's normaliser, and gets weight 0 if it is selected.
//   Masked experts rank below those, forced experts above everything. When fewer than k experts
//   have a usable score, the remaining slots hold the lowest unused ids in that rank order, at
//   weight 0 (a -inf score also gets weight 0, whatever the scoring).
// - Results are bitwise identical for any thread count, noise included (a counter-based RNG keyed
//   by (seed, token, expert)).
#pragma once
#include <cstdint>
#include <type_traits>

#include "logitkit/export.h"
#include "logitkit/view.h"

namespace logitkit {

enum class RouteScoring : uint8_t {
  kSoftmax,       // softmax over the (unmasked) experts
  kSigmoid,       // sigmoid(x) (DeepSeek-V3)
  kSqrtSoftplus,  // sqrt(softplus(x)) (DeepSeek-V4)
  kNone,          // the transformed logits themselves
};

// Applied to the logits after the softcap and before the temperature (the activation gate of
// "Is Temperature Sample Efficient for Softmax Gaussian MoE?": softmax(activation(x) / tau)).
enum class RouteActivation : uint8_t { kNone, kTanh, kSigmoid, kRelu };

enum class RouteWeights : uint8_t {
  kScores,    // the selected experts' scores (unbiased, over all experts)
  kSelected,  // softmax over the k selected transformed logits (gpt-oss; Mixtral's renormalised form)
};

enum class GroupScore : uint8_t {
  kMax,      // the group's largest key (DeepSeek-V2)
  kTop2Sum,  // the sum of its two largest keys (DeepSeek-V3, with a bias); one-expert groups: the key
};

enum class RouteNoise : uint8_t {
  kNone,
  kGaussian,  // x + std * N(0, 1) (Shazeer et al. 2017's noisy top-k; std per expert or per element)
  kGumbel,    // x + Gumbel(0, 1) (std scales it)
  kJitter,    // x * U(1 - std, 1 + std) (Switch / Mixtral's multiplicative jitter)
};

struct RouteOptions {
  RouteScoring scoring = RouteScoring::kSoftmax;
  double softcap = 0.0;      // > 0: x -> softcap tanh(x / softcap) first; 0: off
  RouteActivation activation = RouteActivation::kNone;
  double temperature = 1.0;  // x -> x / temperature after the activation; finite, > 0
  RouteWeights weights_from = RouteWeights::kScores;
  bool renormalize = false;      // selected weights divided by (their sum + renormalize_eps); a zero
  double renormalize_eps = 0.0;  // sum leaves them 0 (never NaN). DeepSeek-V3's HF code: 1e-20
  double scaling_factor = 1.0;   // routed scaling, applied last
  int64_t n_group = 1;           // experts in n_group equal groups; only topk_group groups stay
  int64_t topk_group = 0;        // 0: n_group (no limit). The losing groups' experts get key -inf
                                 // (the official DeepSeek rule; HF's older code filled 0.0)
  GroupScore group_score = GroupScore::kMax;
  RouteNoise noise = RouteNoise::kNone;
  double noise_std = 1.0;  // the noise's scale where no per-expert std view is given
  uint64_t seed = 0;
};

// Routes each row of `logits` (T rows of E experts, experts along the last axis; any leading batch
// shape and strides) to k experts: `weights` and `ids` have logits' shape with the last extent k,
// columns in descending order of selection key (forced experts first). Optional views, each empty
// or of shape (E,) or logits' shape (broadcast over tokens when (E,)): `bias` (E,) only, added to
// the scores for selection and never to the weights (DeepSeek-V3's auxiliary-loss-free
// balancing); `expert_mask` (nonzero = allowed); `force` (nonzero = always selected, at most k per
// token, never together with a mask's zero); `noise_std` (per-expert or per-element noise scale).
// Errors (logitkit::Error naming the argument): k outside [1, E], n_group not dividing E,
// topk_group outside [1, n_group] or keeping fewer than k experts, bad temperature/softcap/eps/
// scaling_factor, non-finite bias, shapes. T = float or double.
template <class T>
void route(InputView<T> /*logits*/, ArrayView<T> /*weights*/, ArrayView<int32_t> /*ids*/, int64_t /*k*/,
           const RouteOptions& /*options*/ = {}, ArrayView<const T> /*bias*/ = {},
           ArrayView<const uint8_t> /*expert_mask*/ = {}, ArrayView<const uint8_t> /*force*/ = {},
           ArrayView<const T> /*noise_std*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::route: T must be float or double");
}
#define LOGITKIT_DECLARE_ROUTE(T)                                                                           \
  template <>                                                                                               \
  LOGITKIT_API void route<T>(InputView<T>, ArrayView<T>, ArrayView<int32_t>, int64_t, const RouteOptions&, \
                             ArrayView<const T>, ArrayView<const uint8_t>, ArrayView<const uint8_t>,        \
                             ArrayView<const T>);
LOGITKIT_DECLARE_ROUTE(float)
LOGITKIT_DECLARE_ROUTE(double)
#undef LOGITKIT_DECLARE_ROUTE

// Expert choice routing (Zhou et al. 2022): with s = softmax(logits) over the experts (T, E) of
// each token, every expert takes its `capacity` tokens of largest s (ties: lower token; NaN
// lowest), so weights and tokens have shape (E, capacity), columns in descending order. The
// selection is route()'s (scoring kNone) over the transposed scores. capacity in [1, T].
template <class T>
void expert_choice(InputView<T> /*logits*/, ArrayView<T> /*weights*/, ArrayView<int32_t> /*tokens*/,
                   int64_t /*capacity*/) {
  static_assert(detail::kIsElement<T>, "logitkit::expert_choice: T must be float or double");
}
template <> LOGITKIT_API void expert_choice<float>(InputView<float>, ArrayView<float>, ArrayView<int32_t>, int64_t);
template <> LOGITKIT_API void expert_choice<double>(InputView<double>, ArrayView<double>, ArrayView<int32_t>, int64_t);

}  // namespace logitkit
