// linear_cross_entropy of the C++ API: cross-entropy of the logits input @ linear_weight^T (+
// linear_bias) and its gradients, computed a chunk of rows at a time so that the N x V logits are
// never held (Cut Cross-Entropy, Wijmans et al. 2024, on CPU), with torch's
// F.linear_cross_entropy names and cross_entropy's semantics.
#pragma once
#include <cstdint>
#include <type_traits>

#include "logitkit/export.h"
#include "logitkit/loss.h"
#include "logitkit/view.h"

namespace logitkit {

struct LinearCrossEntropyOptions {
  double label_smoothing = 0.0;  // as CrossEntropyOptions
  double z_loss = 0.0;           // as CrossEntropyOptions
  double softcap = 0.0;          // as CrossEntropyOptions (0: off)
  // > 0: CCE's gradient filter. A block of a row chunk's gradient over 256 vocabulary entries whose
  // every entry is below filter_eps in softmax-probability units (|g| < filter_eps * the row's
  // gradient scale) is left out of d_input, d_linear_weight and d_linear_bias, as if it were 0.
  // 0: exact (the default). Finite and >= 0.
  double filter_eps = 0.0;
  // Gradients added to the caller's buffers (frameworks accumulate d_linear_weight across
  // micro-batches) instead of overwriting them.
  bool accumulate = false;
  // Rows whose logits are held at once (the only buffer: chunk_rows x V elements). 0: about N / 64
  // (32 to 512), which keeps it near 1.6% of the N x V logits. More rows trade memory for speed
  // (each chunk reads linear_weight twice and d_linear_weight once: measured 1.4x faster at 128
  // rows than at 32 on Zen 3). d_linear_weight sums its chunks in order, so its bits depend on
  // chunk_rows (never on the thread count).
  int64_t chunk_rows = 0;
  // bfloat16 input and linear_weight only (linear_cross_entropy_bf16): the chunk's logit gradient
  // is rounded to bfloat16 (to nearest even) before the d_input and d_linear_weight products, which
  // then also run on the bfloat16 dot product where the ISA has one, as GPU implementations and
  // torch's bfloat16 path do. The gradients stay float32 and float32-accumulated, but each term
  // carries the gradient's bfloat16 rounding (relative 2^-9); d_linear_bias and the loss are
  // unaffected. false (the default): the gradient products use the float32 gradient.
  bool bfloat16_gradient = false;
};

// Each gradient is computed when its view is given (data != nullptr), scaled like LossGrad.
template <class T>
struct LinearCrossEntropyGrads {
  ArrayView<T> input;          // (N, D): d loss / d input
  ArrayView<T> linear_weight;  // (V, D)
  ArrayView<T> linear_bias;    // (V,)
  double grad_output = 1.0;
  ArrayView<const T> grad_output_rows;  // reduction "none": per row (N,)
};

struct LinearCrossEntropyStats {
  int64_t blocks = 0;   // gradient blocks (row chunk x 256 vocabulary entries) formed
  int64_t skipped = 0;  // of those, left out by filter_eps
};

// input (N, D), linear_weight (V, D), target (N,) class indices in [0, V) or ignore_index,
// linear_bias (V,) optional: the loss of cross_entropy(input @ linear_weight^T + linear_bias,
// target, options, {label_smoothing, z_loss, softcap}, weights, loss) exactly as cross_entropy
// defines it, the logits formed by logitkit::gemm a chunk of rows at a time (peak extra memory
// about N V / 64 elements, at least 32 rows' worth). Any strides; gradients must not overlap the
// inputs. Results do not depend on the thread count. Defined for T = float, double and Index =
// int32_t, int64_t.
template <class T, class Index>
double linear_cross_entropy(InputView<T> /*input*/, InputView<T> /*linear_weight*/, ArrayView<const Index> /*target*/,
                            InputView<T> /*linear_bias*/ = {}, const LossOptions& /*options*/ = {},
                            const LinearCrossEntropyOptions& /*lce*/ = {}, const LossWeights<T>& /*weights*/ = {},
                            ArrayView<T> /*loss*/ = {}, const LinearCrossEntropyGrads<T>& /*grads*/ = {},
                            LinearCrossEntropyStats* /*stats*/ = nullptr) {
  static_assert(detail::kIsElement<T>, "logitkit::linear_cross_entropy: T must be float or double");
  static_assert(std::is_same_v<Index, int32_t> || std::is_same_v<Index, int64_t>,
                "logitkit::linear_cross_entropy: targets must be int32_t or int64_t class indices");
  return 0.0;
}

#define LOGITKIT_DECLARE_LINEAR_CROSS_ENTROPY(T, Index)                                                           \
  template <>                                                                                                     \
  LOGITKIT_API double linear_cross_entropy<T, Index>(InputView<T>, InputView<T>, ArrayView<const Index>,         \
                                                     InputView<T>, const LossOptions&,                           \
                                                     const LinearCrossEntropyOptions&, const LossWeights<T>&,    \
                                                     ArrayView<T>, const LinearCrossEntropyGrads<T>&,            \
                                                     LinearCrossEntropyStats*);
LOGITKIT_DECLARE_LINEAR_CROSS_ENTROPY(float, int32_t)
LOGITKIT_DECLARE_LINEAR_CROSS_ENTROPY(float, int64_t)
LOGITKIT_DECLARE_LINEAR_CROSS_ENTROPY(double, int32_t)
LOGITKIT_DECLARE_LINEAR_CROSS_ENTROPY(double, int64_t)
#undef LOGITKIT_DECLARE_LINEAR_CROSS_ENTROPY

// The same with bfloat16 input and linear_weight (their bits, as uint16_t; float32 accumulation):
// the loss and float gradients of the float32 problem whose operands are the bfloat16 values.
// No float32 copy of input or linear_weight is made. The logits product (both operands bfloat16)
// runs on the CPU's bfloat16 dot product where the active ISA has one (avx512bf16: vdpbf16ps,
// which reads bfloat16 subnormals as 0), otherwise on the float32 kernel with the values widened
// while packing; the gradient products (a float32 gradient times a bfloat16 operand) always widen.
// Results therefore agree across ISAs to float32 rounding; select "avx512" for the widened path.
template <class Index>
LOGITKIT_API double linear_cross_entropy_bf16(ArrayView<const uint16_t> input, ArrayView<const uint16_t> linear_weight,
                                              ArrayView<const Index> target, InputView<float> linear_bias = {},
                                              const LossOptions& options = {},
                                              const LinearCrossEntropyOptions& lce = {},
                                              const LossWeights<float>& weights = {}, ArrayView<float> loss = {},
                                              const LinearCrossEntropyGrads<float>& grads = {},
                                              LinearCrossEntropyStats* stats = nullptr);
extern template LOGITKIT_API double linear_cross_entropy_bf16<int32_t>(
    ArrayView<const uint16_t>, ArrayView<const uint16_t>, ArrayView<const int32_t>, InputView<float>, const LossOptions&,
    const LinearCrossEntropyOptions&, const LossWeights<float>&, ArrayView<float>, const LinearCrossEntropyGrads<float>&,
    LinearCrossEntropyStats*);
extern template LOGITKIT_API double linear_cross_entropy_bf16<int64_t>(
    ArrayView<const uint16_t>, ArrayView<const uint16_t>, ArrayView<const int64_t>, InputView<float>, const LossOptions&,
    const LinearCrossEntropyOptions&, const LossWeights<float>&, ArrayView<float>, const LinearCrossEntropyGrads<float>&,
    LinearCrossEntropyStats*);

}  // namespace logitkit
