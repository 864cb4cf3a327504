// linear_cross_entropy: Cut Cross-Entropy on CPU, composed of the gemm family and cross_entropy's
// row loop; it has no kernels of its own.
//
// Rows are taken a chunk at a time (chunk_rows: about N / 64 rows, 32 to 512, unless the caller
// sets it): the chunk's logits
// (rows x V) are formed by one GEMM, cross_entropy's row loop turns them into the loss and, in
// place, into their gradient G, and two more GEMMs add G^T X_chunk to d_linear_weight and write
// G W to the chunk's d_input rows. Three GEMMs of 2 N V D flops, the minimum for the loss and both
// gradients: the kernel is compute-bound and judged against the FMA peak (bench/fma_peak.cc). The
// price of holding only a chunk is one read and write of d_linear_weight per chunk (64 passes),
// which at K = rows per chunk >= 32 stays under the FMA time on the machines measured
// (bench/README.md). Chunks run in order and every GEMM tile sums its K in order, so the results
// do not depend on the thread count.
#include "logitkit/linear_cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "cross_entropy/cross_entropy_chunk.h"
#include "gemm/gemm_run.h"
#include "logitkit/cross_entropy.h"
#include "logitkit/error.h"
#include "runtime/invalid.h"
#include "runtime/kernel_table.h"
#include "runtime/loss_support.h"
#include "runtime/thread_pool.h"

namespace logitkit {

namespace {

constexpr size_t kFilterBlock = kGemmKc;  // vocabulary entries per gradient-filter block

// Rows per chunk: a function of N alone (never of the thread count), so that d_linear_weight's sum
// over the chunks is the same for every run. N / 64 rows keeps the chunk's logits near 1.6% of N V.
size_t chunk_rows(size_t n) {
  const size_t rows = ((n + 63) / 64 + 7) / 8 * 8;
  return std::clamp<size_t>(rows, 32, 512);
}

std::string shape_str(std::initializer_list<int64_t> dims) {
  std::string s = "(";
  for (int64_t d : dims) s += (s.size() > 1 ? ", " : "") + std::to_string(d);
  return s + (dims.size() == 1 ? ",)" : ")");
}

template <class U>
std::string view_shape(const ArrayView<U>& v) {
  std::string s = "(";
  for (int d = 0; d < v.ndim; ++d) s += (d ? ", " : "") + std::to_string(v.shape[d]);
  return s + (v.ndim == 1 ? ",)" : ")");
}

template <class U>
void check_shape(const ArrayView<U>& v, std::initializer_list<int64_t> dims, const char* argument) {
  bool ok = v.ndim == static_cast<int>(dims.size());
  int d = 0;
  for (int64_t e : dims) ok = ok && v.shape[d++] == e;
  if (!ok) invalid(argument, "must have shape " + shape_str(dims) + ", got " + view_shape(v));
  int64_t size = 1;
  for (int64_t e : dims) size *= e;
  if (v.data == nullptr && size != 0) invalid(argument, "is null");
}

// Rows [r0, r0 + rows) of a view's first axis.
template <class U>
ArrayView<U> rows_of(ArrayView<U> v, int64_t r0, int64_t rows) {
  if (v.data == nullptr) return v;
  v.data += r0 * v.strides[0];
  v.shape[0] = rows;
  return v;
}

// float to bfloat16 bits, rounded to nearest even (NaN stays a quiet NaN).
template <class T>
uint16_t round_to_bf16(T value) {
  const float f = static_cast<float>(value);
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

template <class T, class E, class Index>
double linear_cross_entropy_impl(ArrayView<const E> input, ArrayView<const E> linear_weight,
                                 ArrayView<const Index> target, ArrayView<const T> bias, const LossOptions& options,
                                 const LinearCrossEntropyOptions& lce, const LossWeights<T>& weights,
                                 ArrayView<T> loss, const LinearCrossEntropyGrads<T>& grads,
                                 LinearCrossEntropyStats* stats) {
  constexpr GemmElement kElement = std::is_same_v<E, uint16_t> ? GemmElement::kBFloat16 : GemmElement::kNative;
  if (input.ndim != 2) invalid("input", "must be 2-D (N, D), got " + std::to_string(input.ndim) + " dimensions");
  if (linear_weight.ndim != 2)
    invalid("linear_weight", "must be 2-D (V, D), got " + std::to_string(linear_weight.ndim) + " dimensions");
  const int64_t N = input.shape[0], D = input.shape[1], V = linear_weight.shape[0];
  if (linear_weight.shape[1] != D)
    invalid("linear_weight", "has " + std::to_string(linear_weight.shape[1]) + " columns, but input has " +
                                 std::to_string(D) + " (its last axis)");
  if (V == 0) invalid("linear_weight", "has no rows: the loss needs at least one class");
  check_shape(input, {N, D}, "input");
  check_shape(linear_weight, {V, D}, "linear_weight");
  check_shape(target, {N}, "target");
  if (given(bias)) check_shape(bias, {V}, "linear_bias");
  if (given(weights.weight)) check_shape(weights.weight, {V}, "weight");  // read by the normalisers below
  if (given(weights.sample_weight)) check_shape(weights.sample_weight, {N}, "sample_weight");
  if (options.reduction == Reduction::kNone) check_shape(loss, {N}, "loss");
  if (lce.bfloat16_gradient && kElement != GemmElement::kBFloat16)
    invalid("bfloat16_gradient", "needs bfloat16 input and linear_weight");
  if (!(lce.filter_eps >= 0.0) || !std::isfinite(lce.filter_eps))
    invalid("filter_eps", "must be a finite number >= 0 (0: exact), got " + std::to_string(lce.filter_eps));
  const bool d_input = given(grads.input), d_weight = given(grads.linear_weight), d_bias = given(grads.linear_bias);
  const bool with_grad = d_input || d_weight || d_bias;
  if (d_input) check_shape(grads.input, {N, D}, "d_input");
  if (d_weight) check_shape(grads.linear_weight, {V, D}, "d_linear_weight");
  if (d_bias) check_shape(grads.linear_bias, {V}, "d_linear_bias");
  for (const auto& [view, name] : {std::pair{grads.input, "d_input"}, std::pair{grads.linear_weight, "d_linear_weight"},
                                   std::pair{grads.linear_bias, "d_linear_bias"}, std::pair{loss, "loss"}})
    if (byte_range(view).first != byte_range(view).second)  // not empty
      for (int dim = 0; dim < view.ndim; ++dim)
        if (view.shape[dim] > 1 && view.strides[dim] == 0) invalid(name, "must not broadcast (a zero stride)");
  const bool per_row_scale = options.reduction == Reduction::kNone && given(grads.grad_output_rows);
  if (per_row_scale) check_shape(grads.grad_output_rows, {N}, "grad_output");
  if (!std::isfinite(grads.grad_output)) invalid("grad_output", "must be finite");
  {  // gradients are written while the inputs are still read
    const std::pair<uintptr_t, uintptr_t> inputs[] = {byte_range(input), byte_range(linear_weight), byte_range(target),
                                                      byte_range(bias), byte_range(weights.weight),
                                                      byte_range(weights.sample_weight)};
    const std::pair<const char*, std::pair<uintptr_t, uintptr_t>> outputs[] = {
        {"d_input", byte_range(grads.input)},
        {"d_linear_weight", byte_range(grads.linear_weight)},
        {"d_linear_bias", byte_range(grads.linear_bias)},
        {"loss", byte_range(loss)}};
    for (const auto& out : outputs) {
      for (const auto& in : inputs)
        if (ranges_overlap(out.second, in)) invalid(out.first, "must not overlap an input");
      for (const auto& other : outputs)
        if (other.first != out.first && ranges_overlap(out.second, other.second))
          invalid(out.first, std::string("must not overlap ") + other.first);
    }
  }
  kernels();  // the thread environment checked before any work

  CrossEntropyOptions ce;
  ce.label_smoothing = lce.label_smoothing;
  ce.z_loss = lce.z_loss;
  ce.softcap = lce.softcap;
  LossOptions row_options = options;
  row_options.axis = -1;
  const bool mean = options.reduction == Reduction::kMean;

  // The whole batch's "mean" normalisers, and every target checked, before anything is written.
  static const T shape_anchor = T(0);
  ArrayView<const T> logits_shape;
  logits_shape.data = &shape_anchor;
  logits_shape.ndim = 2;
  logits_shape.shape[0] = N;
  logits_shape.shape[1] = V;
  const CrossEntropyNormalisers norm =
      cross_entropy_normalisers<T, Index>(logits_shape, target, -1, weights, options.ignore_index);
  double scale = grads.grad_output, z_scale = grads.grad_output;
  if (mean) {
    scale /= norm.weight;
    z_scale /= norm.rows;
  }

  const size_t n = static_cast<size_t>(N), v = static_cast<size_t>(V), d = static_cast<size_t>(D);
  if (lce.chunk_rows < 0) invalid("chunk_rows", "must be >= 0 (0: automatic), got " + std::to_string(lce.chunk_rows));
  const size_t chunk = std::min(lce.chunk_rows ? static_cast<size_t>(lce.chunk_rows) : chunk_rows(n),
                                std::max<size_t>(n, 1));
  std::unique_ptr<T[]> logits(new T[chunk * v]);  // the only buffer of the loss: chunk x V
  // bfloat16_gradient: the chunk's gradient rounded, for the two gradient products (half of it)
  const bool round_gradient = lce.bfloat16_gradient && with_grad && (d_input || d_weight);
  std::unique_ptr<uint16_t[]> gradient_bf16(round_gradient ? new uint16_t[chunk * v] : nullptr);
  const size_t blocks = (v + kFilterBlock - 1) / kFilterBlock;
  std::vector<uint8_t> skip(lce.filter_eps > 0.0 ? blocks : 0);
  int64_t blocks_formed = 0, blocks_skipped = 0;
  const bool class_weighted = given(weights.weight);
  double loss_sum = 0.0, z_sum = 0.0;

  for (size_t r0 = 0; r0 < n; r0 += chunk) {
    const size_t rows = std::min(chunk, n - r0);
    const int64_t r0i = static_cast<int64_t>(r0), rowsi = static_cast<int64_t>(rows);
    // logits^T = linear_weight @ input[r0:r0+rows]^T (+ bias: the rows start as the bias), written
    // transposed into the chunk's rows: linear_weight is then the operand read in place and the
    // small chunk of input the one packed (packing linear_weight's columns for every chunk cost
    // more than the products it feeds at 32 rows).
    const GemmOperand chunk_input = {input.data + r0i * input.strides[0], input.strides[0], input.strides[1], kElement};
    GemmProblem<T> p;
    p.a = {linear_weight.data, linear_weight.strides[0], linear_weight.strides[1], kElement};
    p.b = {chunk_input.data, input.strides[1], input.strides[0], kElement};
    p.c = logits.get();
    p.c_rs = 1;
    p.c_cs = V;
    p.m = v;
    p.n = rows;
    p.k = d;
    if (given(bias)) {
      for (size_t c = 0; c < v; ++c) logits[c] = bias.data[static_cast<int64_t>(c) * bias.strides[0]];
      for (size_t r = 1; r < rows; ++r) std::copy(logits.get(), logits.get() + v, logits.get() + r * v);
      p.accumulate = true;
    }
    run_gemm(p);

    const ArrayView<T> chunk_logits = ArrayView<T>::contiguous(logits.get(), {rowsi, V});
    LossWeights<T> chunk_weights{weights.weight, rows_of(weights.sample_weight, r0i, rowsi)};
    LossGrad<T> g;
    if (with_grad) {
      g.grad = chunk_logits;  // in place: the logits become their gradient
      g.grad_output = grads.grad_output;
      g.grad_output_rows = rows_of(grads.grad_output_rows, r0i, rowsi);
    }
    CrossEntropyChunk sums;
    sums.scale = scale;
    sums.z_scale = z_scale;
    cross_entropy_chunk<T, Index>(chunk_logits, rows_of(target, r0i, rowsi), row_options, ce, chunk_weights,
                                  options.reduction == Reduction::kNone ? rows_of(loss, r0i, rowsi) : ArrayView<T>{},
                                  g, sums);
    loss_sum += sums.loss;
    z_sum += sums.z;
    if (!with_grad) continue;

    blocks_formed += static_cast<int64_t>(blocks);
    const uint8_t* skip_blocks = nullptr;
    if (!skip.empty()) {
      // Each row's threshold in softmax-probability units: filter_eps times the row's scale.
      std::vector<T> threshold(rows);
      for (size_t r = 0; r < rows; ++r) {
        const int64_t row = r0i + static_cast<int64_t>(r);
        double s = per_row_scale ? static_cast<double>(grads.grad_output_rows.data[row * grads.grad_output_rows.strides[0]])
                                 : scale;
        if (given(weights.sample_weight))
          s *= static_cast<double>(weights.sample_weight.data[row * weights.sample_weight.strides[0]]);
        const int64_t t = static_cast<int64_t>(target.data[row * target.strides[0]]);
        if (class_weighted && t != options.ignore_index)
          s *= static_cast<double>(weights.weight.data[t * weights.weight.strides[0]]);
        threshold[r] = static_cast<T>(lce.filter_eps * std::fabs(s));
      }
      parallel_for(blocks, [&](size_t b) {
        const size_t c0 = b * kFilterBlock, c1 = std::min(v, c0 + kFilterBlock);
        bool small = true;
        for (size_t r = 0; r < rows && small; ++r) {
          const T* row = logits.get() + r * v;
          for (size_t c = c0; c < c1; ++c) small = small && !(std::fabs(row[c]) > threshold[r]);
        }
        skip[b] = small ? 1 : 0;
      });
      for (uint8_t s : skip) blocks_skipped += s;
      skip_blocks = skip.data();
    }
    const bool add = lce.accumulate || r0 > 0;
    GemmOperand g_rows = {logits.get(), V, 1, GemmElement::kNative};  // G (rows x V)
    if (round_gradient) {
      uint16_t* out = gradient_bf16.get();
      const T* in = logits.get();
      parallel_for((rows * v + 16383) / 16384, [&](size_t b) {
        for (size_t i = b * 16384; i < std::min(rows * v, (b + 1) * 16384); ++i) out[i] = round_to_bf16(in[i]);
      });
      g_rows = {out, V, 1, GemmElement::kBFloat16};
    }
    if (d_weight) {  // d_linear_weight (+)= G^T input[r0:r0+rows]
      GemmProblem<T> q;
      q.a = {g_rows.data, 1, V, g_rows.type};
      q.b = chunk_input;
      q.c = grads.linear_weight.data;
      q.c_rs = grads.linear_weight.strides[0];
      q.c_cs = grads.linear_weight.strides[1];
      q.m = v;
      q.n = d;
      q.k = rows;
      q.accumulate = add;
      q.skip_m = skip_blocks;
      run_gemm(q);
    }
    if (d_bias) {  // d_linear_bias (+)= column sums of G, rows added in order
      const ptrdiff_t stride = grads.linear_bias.strides[0];
      parallel_for((v + 4095) / 4096, [&](size_t b) {
        for (size_t c = b * 4096; c < std::min(v, (b + 1) * 4096); ++c) {
          T& out = grads.linear_bias.data[static_cast<ptrdiff_t>(c) * stride];
          T s = add ? out : T(0);
          if (!skip_blocks || !skip_blocks[c / kFilterBlock])
            for (size_t r = 0; r < rows; ++r) s += logits[r * v + c];
          out = s;
        }
      });
    }
    if (d_input) {  // d_input[r0:r0+rows] (+)= G linear_weight
      GemmProblem<T> q;
      q.a = g_rows;
      q.b = {linear_weight.data, linear_weight.strides[0], linear_weight.strides[1], kElement};
      q.c = grads.input.data + r0i * grads.input.strides[0];
      q.c_rs = grads.input.strides[0];
      q.c_cs = grads.input.strides[1];
      q.m = rows;
      q.n = d;
      q.k = v;
      q.accumulate = lce.accumulate;
      q.skip_k = skip_blocks;
      run_gemm(q);
    }
  }
  if (n == 0 && !lce.accumulate) {  // an empty batch: zero gradients
    if (d_weight)
      for (int64_t i = 0; i < V; ++i)
        for (int64_t j = 0; j < D; ++j)
          grads.linear_weight.data[i * grads.linear_weight.strides[0] + j * grads.linear_weight.strides[1]] = T(0);
    if (d_bias)
      for (int64_t i = 0; i < V; ++i) grads.linear_bias.data[i * grads.linear_bias.strides[0]] = T(0);
  }
  if (stats) {
    stats->blocks = blocks_formed;
    stats->skipped = blocks_skipped;
  }
  if (!mean) return loss_sum + z_sum;
  return loss_sum / norm.weight + (ce.z_loss > 0.0 ? z_sum / norm.rows : 0.0);
}

}  // namespace

#define LOGITKIT_SPECIALIZE(T, Index)                                                                               \
  template <>                                                                                                       \
  double linear_cross_entropy<T, Index>(InputView<T> input, InputView<T> linear_weight, ArrayView<const Index> target, \
                                        InputView<T> linear_bias, const LossOptions& options,                       \
                                        const LinearCrossEntropyOptions& lce, const LossWeights<T>& weights,        \
                                        ArrayView<T> loss, const LinearCrossEntropyGrads<T>& grads,                 \
                                        LinearCrossEntropyStats* stats) {                                           \
    return linear_cross_entropy_impl<T, T, Index>(input, linear_weight, target, linear_bias, options, lce, weights, \
                                                  loss, grads, stats);                                              \
  }
LOGITKIT_SPECIALIZE(float, int32_t)
LOGITKIT_SPECIALIZE(float, int64_t)
LOGITKIT_SPECIALIZE(double, int32_t)
LOGITKIT_SPECIALIZE(double, int64_t)
#undef LOGITKIT_SPECIALIZE

template <class Index>
double linear_cross_entropy_bf16(ArrayView<const uint16_t> input, ArrayView<const uint16_t> linear_weight,
                                 ArrayView<const Index> target, InputView<float> linear_bias, const LossOptions& options,
                                 const LinearCrossEntropyOptions& lce, const LossWeights<float>& weights,
                                 ArrayView<float> loss, const LinearCrossEntropyGrads<float>& grads,
                                 LinearCrossEntropyStats* stats) {
  return linear_cross_entropy_impl<float, uint16_t, Index>(input, linear_weight, target, linear_bias, options, lce,
                                                           weights, loss, grads, stats);
}
template double linear_cross_entropy_bf16<int32_t>(ArrayView<const uint16_t>, ArrayView<const uint16_t>,
                                                   ArrayView<const int32_t>, InputView<float>, const LossOptions&,
                                                   const LinearCrossEntropyOptions&, const LossWeights<float>&,
                                                   ArrayView<float>, const LinearCrossEntropyGrads<float>&,
                                                   LinearCrossEntropyStats*);
template double linear_cross_entropy_bf16<int64_t>(ArrayView<const uint16_t>, ArrayView<const uint16_t>,
                                                   ArrayView<const int64_t>, InputView<float>, const LossOptions&,
                                                   const LinearCrossEntropyOptions&, const LossWeights<float>&,
                                                   ArrayView<float>, const LinearCrossEntropyGrads<float>&,
                                                   LinearCrossEntropyStats*);

}  // namespace logitkit
