// Mixture-of-Experts data movement and auxiliary losses of the C++ API: dispatch plans (counting
// sort of the routed (token, slot) pairs by expert, capacity, drop policy, block padding for
// grouped GEMMs), permute / unpermute of hidden states, expert choice routing, expert counts, the
// balancing losses with their gradients with respect to the router logits, the auxiliary-loss-free
// bias update, and Self-Contrast MoE's contrastive logits. Deterministic: integer work is exact and
// every floating-point sum has a fixed order, whatever the thread count.
#pragma once
#include <cstdint>
#include <type_traits>

#include "logitkit/export.h"
#include "logitkit/view.h"

namespace logitkit {

enum class DropPolicy : uint8_t {
  kPosition,  // an over-capacity expert keeps its first tokens (lowest token index; GShard/Switch)
  kProbs,     // it keeps the tokens with the largest routing weights (ties: lower token)
};

struct DispatchOptions {
  int64_t capacity = -1;         // slots per expert; -1: from capacity_factor, or unlimited
  double capacity_factor = 0.0;  // > 0 (capacity -1): capacity = max(min_capacity, ceil(f T k / E))
  int64_t min_capacity = 4;
  DropPolicy drop_policy = DropPolicy::kPosition;
  int64_t block_size = 1;  // each expert's segment padded to a multiple of it (moe_align_block_size)
};

// The plan's arrays, caller-owned. With T tokens, k slots per token, E experts, B = block_size,
// the padded slot count P is at most dispatch_slot_bound(T k, E, B) (allocate that much):
//   counts (E,)        pairs routed to each expert (before capacity)
//   kept (E,)          pairs each expert keeps (min(count, capacity))
//   offsets (E + 1,)   start of each expert's padded segment in the slot order; offsets[E] = P
//   position (T, k)    each pair's slot, or -1 when dropped
//   slot_token (P,)    the token of each slot in expert order (by token within an expert), -1 for padding
//   slot_pair (P,)     its pair index t k + j (weights' flat index), -1 for padding
//   block_expert (P / B,)  the expert of each block of B slots
struct DispatchPlanView {
  ArrayView<int64_t> counts, kept, offsets;
  ArrayView<int32_t> position;
  ArrayView<int32_t> slot_token, slot_pair, block_expert;
};

LOGITKIT_API int64_t dispatch_slot_bound(int64_t pairs, int64_t experts, int64_t block_size);

// The capacity dispatch() uses for these options (-1: unlimited). Errors name the option.
LOGITKIT_API int64_t dispatch_capacity(int64_t tokens, int64_t k, int64_t experts, const DispatchOptions& options);

// Builds the plan from expert ids (T, k) (int32, any strides; every id in [0, E), an Error naming
// "experts" otherwise). `weights` (T, k) is needed by DropPolicy::kProbs only. Returns P.
template <class T>
int64_t dispatch(ArrayView<const int32_t> /*experts*/, int64_t /*num_experts*/, const DispatchOptions& /*options*/,
                 const DispatchPlanView& /*plan*/, ArrayView<const T> /*weights*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::dispatch: T must be float or double");
  return 0;
}
template <> LOGITKIT_API int64_t dispatch<float>(ArrayView<const int32_t>, int64_t, const DispatchOptions&,
                                                 const DispatchPlanView&, ArrayView<const float>);
template <> LOGITKIT_API int64_t dispatch<double>(ArrayView<const int32_t>, int64_t, const DispatchOptions&,
                                                  const DispatchPlanView&, ArrayView<const double>);

// Histogram of expert ids (any shape, int32) into counts (num_experts,). Errors name "experts".
LOGITKIT_API void expert_counts(ArrayView<const int32_t> experts, int64_t num_experts, ArrayView<int64_t> counts);

// out[s] = hidden[slot_token[s]] for the P slots (zeros for padding): rows of H elements of
// `item_bytes` bytes each (any element type: a row copy). hidden (T, H) and out (P, H) with
// contiguous rows (row strides free).
LOGITKIT_API void permute(const void* hidden, int64_t tokens, int64_t row_stride_bytes, ArrayView<const int32_t> slot_token,
                          void* out, int64_t out_row_stride_bytes, int64_t row_bytes);

// out[t] = sum over j in order of weights[t, j] expert_out[position[t, j]], dropped pairs
// (position -1) skipped; a token with no kept pair gets zeros. expert_out (P, H), out (T, H).
template <class T>
void unpermute(ArrayView<const T> /*expert_out*/, ArrayView<const int32_t> /*position*/, ArrayView<const T> /*weights*/,
               ArrayView<T> /*out*/) {
  static_assert(detail::kIsElement<T>, "logitkit::unpermute: T must be float or double");
}
template <> LOGITKIT_API void unpermute<float>(ArrayView<const float>, ArrayView<const int32_t>, ArrayView<const float>,
                                               ArrayView<float>);
template <> LOGITKIT_API void unpermute<double>(ArrayView<const double>, ArrayView<const int32_t>,
                                                ArrayView<const double>, ArrayView<double>);

enum class BalanceNormalization : uint8_t {
  kSwitch,     // alpha E sum_e f_e P_e, f_e = count_e / (T k) (Switch, Megatron, DeepSpeed's top-k l_aux)
  kHfMixtral,  // alpha E sum_e (count_e / T) P_e: HF's load_balancing_loss_func, k times kSwitch
};

// Load-balancing loss of router logits (T, E) and the selected experts (T, k): P_e is the mean
// over tokens of softmax(logits)_e, the counts are constants. Returns the loss; with grad (T, E)
// non-empty writes d loss / d logits (grad_output times it).
template <class T>
double load_balancing_loss(InputView<T> /*logits*/, ArrayView<const int32_t> /*experts*/, BalanceNormalization /*norm*/,
                           double /*alpha*/, ArrayView<T> /*grad*/ = {}, double /*grad_output*/ = 1.0) {
  static_assert(detail::kIsElement<T>, "logitkit::load_balancing_loss: T must be float or double");
  return 0.0;
}
// DeepSeek-V3's sequence-wise balance loss: tokens in sequences of seq_len (T a multiple of it),
// per sequence P_i = mean_t s'_{t,i} with s' = sigmoid(logits) normalised over the experts,
// f_i = E / (k seq_len) * (count of i in the sequence's top-k); L = alpha sum_i f_i P_i, averaged
// over the sequences.
template <class T>
double sequence_balance_loss(InputView<T> /*logits*/, ArrayView<const int32_t> /*experts*/, int64_t /*seq_len*/,
                             double /*alpha*/, ArrayView<T> /*grad*/ = {}, double /*grad_output*/ = 1.0) {
  static_assert(detail::kIsElement<T>, "logitkit::sequence_balance_loss: T must be float or double");
  return 0.0;
}
// ST-MoE's router z-loss: mean over tokens of logsumexp(logits)^2.
template <class T>
double router_z_loss(InputView<T> /*logits*/, ArrayView<T> /*grad*/ = {}, double /*grad_output*/ = 1.0) {
  static_assert(detail::kIsElement<T>, "logitkit::router_z_loss: T must be float or double");
  return 0.0;
}

// Self-Contrast MoE decoding (Shi et al. 2024): out = (1 + beta) strong - beta weak where
// strong >= log(alpha) + max(strong) along the last axis, -inf elsewhere (the plausibility mask).
template <class T>
void contrastive_logits(InputView<T> /*strong*/, InputView<T> /*weak*/, ArrayView<T> /*out*/, double /*beta*/,
                        double /*alpha*/) {
  static_assert(detail::kIsElement<T>, "logitkit::contrastive_logits: T must be float or double");
}

// DeepSeek-V3's auxiliary-loss-free balancing step, in place: bias_e += rate sign(mean load - load_e)
// with counts (E,) the loads of a batch (sign(0) = 0).
template <class T>
void update_bias(ArrayView<T> /*bias*/, ArrayView<const int64_t> /*counts*/, double /*rate*/) {
  static_assert(detail::kIsElement<T>, "logitkit::update_bias: T must be float or double");
}

#define LOGITKIT_DECLARE_MOE_LOSSES(T)                                                                          \
  template <> LOGITKIT_API double load_balancing_loss<T>(InputView<T>, ArrayView<const int32_t>,               \
                                                         BalanceNormalization, double, ArrayView<T>, double);  \
  template <> LOGITKIT_API double sequence_balance_loss<T>(InputView<T>, ArrayView<const int32_t>, int64_t,    \
                                                           double, ArrayView<T>, double);                      \
  template <> LOGITKIT_API double router_z_loss<T>(InputView<T>, ArrayView<T>, double);                        \
  template <> LOGITKIT_API void contrastive_logits<T>(InputView<T>, InputView<T>, ArrayView<T>, double, double); \
  template <> LOGITKIT_API void update_bias<T>(ArrayView<T>, ArrayView<const int64_t>, double);
LOGITKIT_DECLARE_MOE_LOSSES(float)
LOGITKIT_DECLARE_MOE_LOSSES(double)
#undef LOGITKIT_DECLARE_MOE_LOSSES

}  // namespace logitkit
