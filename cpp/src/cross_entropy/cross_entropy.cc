// cross_entropy: operands declared to the row driver (runtime/row_driver.h). Each row's max and
// exp-sum come from the softmax slot (a max pass, then the exp pass from L2 for rows that fit),
// its loss from them and the target logit (plus one more read for label smoothing); with the
// gradient, the exp pass stores its values and one more pass over them (from cache) writes the
// gradient, so the logits may be the gradient's own buffer. "mean" needs the total weight before any gradient is scaled: a first run over the
// targets alone sums it (one element per row).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "logitkit/cross_entropy.h"
#include "logitkit/error.h"
#include "logitkit/runtime.h"
#include "cross_entropy/cross_entropy_chunk.h"
#include "cross_entropy/cross_entropy_kernels.h"
#include "runtime/kernel_table.h"
#include "runtime/loss_support.h"
#include "runtime/row_driver.h"
#include "softmax/softmax_kernels.h"

namespace logitkit {
namespace {

void check_label_smoothing(double ls) {
  if (!(ls >= 0.0 && ls <= 1.0))
    throw Error(Error::Kind::kInvalidArgument, "label_smoothing", "must be in [0, 1], got " + shortest_repr(ls));
}

}  // namespace

// Soft targets: both normalisers are the sum of the sample weights. Run before any gradient is
// written, so that a bad class index leaves the gradient untouched.
template <class T, class Index>
CrossEntropyNormalisers cross_entropy_normalisers(ArrayView<const T> logits, ArrayView<const Index> target, int axis,
                        const LossWeights<T>& weights, int64_t ignore) {
  constexpr bool kSoft = std::is_same_v<Index, T>;
  RowDriver d(axis);
  d.input(logits, "logits", RowExtent::kRow, 0, RowRead::kStrided);  // the shape only: never read
  [[maybe_unused]] const int kTarget = kSoft ? -1 : d.input(target, "target", RowExtent::kScalar);
  const bool row_weighted = given(weights.sample_weight);
  const int kRowWeight = row_weighted ? d.input(weights.sample_weight, "sample_weight", RowExtent::kScalar) : -1;
  const int kW = d.row_values(), kRows = d.row_values();
  const int64_t classes = d.n();
  const T* class_weight = weights.weight.data;
  const ptrdiff_t class_stride = given(weights.weight) ? weights.weight.strides[0] : 0;
  RowPolicy policy;
  policy.work_per_row = 1;
  BadTarget bad;
  d.run(
      [&](const RowBatch& b) {
        for (size_t r = 0; r < b.rows; ++r) {
          const double sw = row_weighted ? static_cast<double>(*b.row<const T>(kRowWeight, r)) : 1.0;
          double w = sw, rows = sw;
          if constexpr (!kSoft) {
            const int64_t t = static_cast<int64_t>(*b.row<const Index>(kTarget, r));
            if (t == ignore || t < 0 || t >= classes) {
              if (t != ignore) bad.report(b.first_row + static_cast<int64_t>(r), t);
              w = rows = 0.0;
            } else {
              w *= class_weight ? static_cast<double>(class_weight[t * class_stride]) : 1.0;
            }
          }
          *b.row<double>(kW, r) = w;
          *b.row<double>(kRows, r) = rows;
        }
      },
      policy);
  bad.throw_if_any(classes, ignore);
  return {d.row_value_sum(kW), d.row_value_sum(kRows)};
}
template CrossEntropyNormalisers cross_entropy_normalisers<float, int32_t>(ArrayView<const float>, ArrayView<const int32_t>, int, const LossWeights<float>&, int64_t);
template CrossEntropyNormalisers cross_entropy_normalisers<float, int64_t>(ArrayView<const float>, ArrayView<const int64_t>, int, const LossWeights<float>&, int64_t);
template CrossEntropyNormalisers cross_entropy_normalisers<double, int32_t>(ArrayView<const double>, ArrayView<const int32_t>, int, const LossWeights<double>&, int64_t);
template CrossEntropyNormalisers cross_entropy_normalisers<double, int64_t>(ArrayView<const double>, ArrayView<const int64_t>, int, const LossWeights<double>&, int64_t);

namespace {

using Form = CrossEntropyOptions::Form;

void check_form(const CrossEntropyOptions& ce, bool soft) {
  if (!std::isfinite(ce.target_margin))
    throw Error(Error::Kind::kInvalidArgument, "target_margin", "must be finite, got " + shortest_repr(ce.target_margin));
  if (ce.target_margin != 0.0 && soft)
    throw Error(Error::Kind::kInvalidArgument, "target_margin", "needs class-index targets");
  if (ce.target_margin != 0.0 && ce.softcap > 0.0)
    throw Error(Error::Kind::kInvalidArgument, "target_margin", "cannot be combined with softcap");
  const double v = ce.form_param;
  switch (ce.form) {
    case Form::kCrossEntropy: return;
    case Form::kFocal:
      if (!(v >= 0.0) || !std::isfinite(v))
        throw Error(Error::Kind::kInvalidArgument, "gamma", "must be a finite number >= 0, got " + shortest_repr(v));
      break;
    case Form::kPoly1:
      if (!std::isfinite(v))
        throw Error(Error::Kind::kInvalidArgument, "epsilon", "must be finite, got " + shortest_repr(v));
      break;
    case Form::kCompSum:
      if (!(v >= 0.0) || !std::isfinite(v))
        throw Error(Error::Kind::kInvalidArgument, "tau", "must be a finite number >= 0, got " + shortest_repr(v));
      break;
    default:
      throw Error(Error::Kind::kInvalidArgument, "form", "not a Form value: " + std::to_string(int(ce.form)));
  }
  if (soft) throw Error(Error::Kind::kInvalidArgument, "target", "this loss needs class-index targets");
  if (ce.label_smoothing != 0.0)
    throw Error(Error::Kind::kInvalidArgument, "label_smoothing", "applies to cross-entropy only");
}

// h(l) and -h'(l) of a Form at l = log p_t (<= 0). 1 - p_t as -expm1(l), exact for p_t near 1.
struct FormValue {
  double loss, slope;
};
FormValue form_value(Form form, double v, double l) {
  l = std::min(l, 0.0);  // rounding can leave log p_t a hair above 0
  const double p = std::exp(l), q = -std::expm1(l);  // p_t, 1 - p_t
  switch (form) {
    case Form::kFocal: {
      // h = -q^g l, h' = -q^g + g q^(g-1) p l (the second term 0 at g = 0; at q = 0 it is 0 for g >= 1)
      const double qg = std::pow(q, v);
      const double second = v == 0.0 || q == 0.0 ? 0.0 : v * std::pow(q, v - 1.0) * p * l;
      return {-qg * l, qg - second};
    }
    case Form::kPoly1:
      return {-l + v * q, 1.0 + v * p};
    case Form::kCompSum:
      if (v == 1.0) return {-l, 1.0};
      // (p^(tau-1) - 1) / (1 - tau) = expm1((tau - 1) l) / (1 - tau); -h' = p^(tau-1)
      return {std::expm1((v - 1.0) * l) / (1.0 - v), std::exp((v - 1.0) * l)};
    default:
      return {-l, 1.0};
  }
}

template <class T>
T* aligned_in(void* scratch, size_t offset_elements) {
  return reinterpret_cast<T*>(reinterpret_cast<char*>(scratch) + 64) + offset_elements;
}

template <class T, class Index>
double cross_entropy_impl(ArrayView<const T> logits, ArrayView<const Index> target, const LossOptions& options,
                          const CrossEntropyOptions& ce, const LossWeights<T>& weights, ArrayView<T> loss,
                          const LossGrad<T>& grad, const CrossEntropyExtras<T>& extras,
                          CrossEntropyChunk* chunk = nullptr) {
  constexpr bool kSoft = std::is_same_v<Index, T>;
  check_loss_outputs(options.reduction, loss, grad);
  check_label_smoothing(ce.label_smoothing);
  if (!(ce.z_loss >= 0.0) || !std::isfinite(ce.z_loss))
    throw Error(Error::Kind::kInvalidArgument, "z_loss", "must be a finite number >= 0, got " + shortest_repr(ce.z_loss));
  checked_softcap<T>(ce.softcap);
  if (kSoft && extras.accuracy)
    throw Error(Error::Kind::kInvalidArgument, "accuracy", "needs class-index targets");
  check_form(ce, kSoft);
  option_in_compute_dtype<T>(ce.target_margin, "target_margin");  // else a margined logit of +-inf: a NaN loss
  const bool none = options.reduction == Reduction::kNone, mean = options.reduction == Reduction::kMean;
  const bool class_weighted = given(weights.weight), row_weighted = given(weights.sample_weight);
  const bool with_grad = given(grad.grad);
  const bool capped = ce.softcap > 0.0, margined = ce.target_margin != 0.0;
  const Form form = ce.form;

  RowDriver d(options.axis);
  const int kX = d.input(logits, "logits");
  const int kTarget = d.input(target, "target", kSoft ? RowExtent::kRow : RowExtent::kScalar);
  const int kRowWeight = row_weighted ? d.input(weights.sample_weight, "sample_weight", RowExtent::kScalar) : -1;
  const bool per_row_scale = none && given(grad.grad_output_rows);
  const int kGradOutput = per_row_scale ? d.input(grad.grad_output_rows, "grad_output", RowExtent::kScalar) : -1;
  const int kLoss = none ? d.output(loss, "loss", RowExtent::kScalar) : -1;
  const int kGrad = with_grad ? d.output(grad.grad, "grad") : -1;
  const int kLse = given(extras.lse) ? d.output(extras.lse, "lse", RowExtent::kScalar) : -1;
  const int kPredicted = given(extras.predicted) ? d.output(extras.predicted, "predicted", RowExtent::kScalar) : -1;
  const int kSumLoss = d.row_values(), kSumWeight = d.row_values();
  const bool with_z = ce.z_loss > 0.0;
  const int kSumZ = with_z ? d.row_values() : -1, kSumRows = with_z ? d.row_values() : -1;
  const int kCorrect = extras.accuracy ? d.row_values() : -1, kCounted = extras.accuracy ? d.row_values() : -1;
  d.check();
  const int64_t classes = d.n();
  const T c = inverse_temperature<T>(ce.temperature);
  if (class_weighted) check_class_weight(weights.weight, classes);
  // The class weights as a contiguous row (the kernels read them beside each row): the caller's
  // own when contiguous, else a copy.
  std::vector<T> class_weight_copy;
  const T* w = nullptr;
  double weight_total = static_cast<double>(classes);  // sum of the class weights
  if (class_weighted) {
    const ptrdiff_t stride = weights.weight.strides[0];
    if (stride != 1 && classes > 1) {
      class_weight_copy.resize(static_cast<size_t>(classes));
      for (int64_t k = 0; k < classes; ++k) class_weight_copy[size_t(k)] = weights.weight.data[k * stride];
      w = class_weight_copy.data();
    } else {
      w = weights.weight.data;
    }
    weight_total = 0.0;
    for (int64_t k = 0; k < classes; ++k) weight_total += static_cast<double>(w[k]);
  }
  const double ls = ce.label_smoothing, ls_per_class = classes ? ls / double(classes) : 0.0;
  const int64_t ignore = options.ignore_index;
  // d loss / d (sum of the row losses), and of the row z-losses (their own normaliser for "mean")
  double scale = grad.grad_output, z_scale = grad.grad_output;
  if (with_grad && chunk) {
    scale = chunk->scale;
    z_scale = chunk->z_scale;
  } else if (with_grad) {  // the targets checked before any gradient is written
    const CrossEntropyNormalisers norm = cross_entropy_normalisers<T, Index>(logits, target, options.axis, weights, ignore);
    if (mean) {
      scale /= norm.weight;
      z_scale /= norm.rows;
    }
  }

  const SoftmaxKernels<T>& sk = kernels().softmax.get<T>();
  const CrossEntropyKernels<T>& k = kernels().cross_entropy.get<T>();
  const size_t n = static_cast<size_t>(classes);
  const T cap = static_cast<T>(ce.softcap);
  // Streaming stores for a gradient far beyond the last-level cache, in rows long enough that the
  // partial lines at their ends are rare.
  const bool stream = with_grad && static_cast<size_t>(d.rows() * d.n()) * sizeof(T) >= last_level_cache_bytes() &&
                      n * sizeof(T) >= 4096;
  // Per-thread scratch, each row in L2: the capped logits, then the exp values of a streamed
  // gradient (the gradient itself holds them otherwise).
  const size_t capped_at = 0, exps_at = capped || margined ? (n + 15) / 16 * 16 : 0;
  BadTarget bad;
  BadSoftTarget bad_soft;
  RowPolicy policy;
  if (capped || margined || stream) policy.scratch_bytes = (exps_at + (stream ? n : 0)) * sizeof(T) + 128;
  d.run([&](const RowBatch& b) {
    for (size_t r = 0; r < b.rows; ++r) {
      const T* logits_row = b.row<const T>(kX, r);
      const T* y = kSoft ? b.row<const T>(kTarget, r) : nullptr;
      const int64_t t = kSoft ? 0 : static_cast<int64_t>(*b.row<const Index>(kTarget, r));
      T* g = with_grad ? b.row<T>(kGrad, r) : nullptr;
      double row_loss = 0.0, row_weight = 0.0, row_z = 0.0, row_count = 0.0, row_lse = 0.0, row_correct = 0.0;
      // soft targets over no classes: an empty sum, loss 0, the row still counted by "mean"
      const bool valid = kSoft ? n > 0 : (t != ignore && t >= 0 && t < classes);
      if (kSoft && n == 0) row_weight = row_weighted ? static_cast<double>(*b.row<const T>(kRowWeight, r)) : 1.0;
      if (!kSoft && t != ignore && !valid) bad.report(b.first_row + static_cast<int64_t>(r), t);
      if (kPredicted >= 0 || (extras.accuracy && valid)) {  // argmax of the caller's logits
        // torch.argmax: the first NaN, else the first maximum
        size_t at = k.find_first(logits_row, n, std::numeric_limits<T>::quiet_NaN());
        if (at == n) at = k.find_first(logits_row, n, sk.max(logits_row, n));
        if (kPredicted >= 0) *b.row<int64_t>(kPredicted, r) = static_cast<int64_t>(at);
        row_correct = valid && static_cast<int64_t>(at) == t ? 1.0 : 0.0;
      }
      SoftDots soft{0.0, 0.0};
      bool finite_targets = true;
      if (valid) {
        const T* x = logits_row;
        if (capped) {
          T* xc = aligned_in<T>(b.scratch, capped_at);
          k.softcap(logits_row, xc, n, cap);
          x = xc;
        } else if (margined) {  // the row with its target logit lowered, in scratch
          T* xm = aligned_in<T>(b.scratch, capped_at);
          std::copy(logits_row, logits_row + n, xm);
          xm[t] = static_cast<T>(static_cast<double>(xm[t]) - ce.target_margin);
          x = xm;
        }
        // The max, then the exp-sum from a second read (from L2 while a row fits there): measured
        // 3x faster than the one-read online max-and-sum, whose rescaling is on the hot path. The
        // exp values are kept for the gradient (in the gradient itself, or in L2 scratch when it is
        // streamed), after every other read of the row: the gradient may be the logits.
        MaxSum<T> ms;
        ms.max = sk.max(x, n);
        T* exps = g ? (stream && !b.gathered ? aligned_in<T>(b.scratch, exps_at) : g) : nullptr;
        const double m = static_cast<double>(ms.max);
        // The target terms, before any write: -sum_c w'_c log p_c = lse A - D with A the summed
        // weights w'_c of the target distribution and D = sum_c w'_c c (x_c - max).
        double target_weight, target_dot, delta_weight = 0.0, z_t = 0.0;
        if constexpr (kSoft) {
          soft = k.soft_dots(x, y, w, n, ms.max);
          finite_targets = std::isfinite(soft.weight);
          target_weight = (1.0 - ls) * soft.weight;
          target_dot = (1.0 - ls) * static_cast<double>(c) * soft.shifted;
        } else {
          const double w_t = class_weighted ? static_cast<double>(w[t]) : 1.0;
          target_weight = delta_weight = (1.0 - ls) * w_t;
          // c (x_t - max) as the kernels round it
          z_t = scaled_difference_scalar(static_cast<double>(x[t]), m, static_cast<double>(c));
          target_dot = (1.0 - ls) * w_t * z_t;
          soft.weight = w_t;
        }
        if (ls > 0.0) {
          target_weight += ls_per_class * weight_total;
          target_dot += ls_per_class * static_cast<double>(c) * k.shifted_dot(x, w, n, ms.max);
        }
        if (!finite_targets) {
          bad_soft.report(b.first_row + static_cast<int64_t>(r));
          exps = nullptr;
        }
        ms.sum = exps ? sk.exp_store_sum(x, exps, n, ms.max, c) : sk.exp_sum(x, n, ms.max, c);
        const double lse = std::log(static_cast<double>(ms.sum));  // log sum exp(c (x - max))
        const double sw = row_weighted ? static_cast<double>(*b.row<const T>(kRowWeight, r)) : 1.0;
        row_loss = sw * (lse * target_weight - target_dot);
        if (!kSoft && form != Form::kCrossEntropy) {
          // loss w_t h(l), gradient w_t (-h'(l)) c (p - onehot): cross-entropy's with -h'(l)
          // weighing the row (l = log p_t = c (x_t - max) - lse, the term above)
          const FormValue f = form_value(form, ce.form_param, z_t - lse);
          row_loss = sw * soft.weight * f.loss;
          target_weight = delta_weight = soft.weight * f.slope;
        }
        row_weight = kSoft ? sw : sw * soft.weight;
        // z-loss (PaLM, ST-MoE): z log^2 Z of the full log-partition c max + lse, per row weighted
        // by sample_weight alone; "mean" divides it by the rows' sample weights (their count).
        const double log_z = static_cast<double>(c) * m + lse;
        row_lse = log_z;
        if (with_z) {
          row_z = sw * ce.z_loss * log_z * log_z;
          row_count = sw;
        }
        if (exps) {
          // g_c = s c (A p_c - w_c ((1 - ls) y_c + ls / C)) (class indices: y one-hot), plus the
          // z-loss's s_z c 2 z log Z p_c, times the softcap's 1 - tanh^2.
          const double go = per_row_scale ? static_cast<double>(*b.row<const T>(kGradOutput, r)) : 1.0;
          const double s = (per_row_scale ? go : scale) * sw * static_cast<double>(c);
          double a = s * target_weight;
          if (with_z) a += (per_row_scale ? go : z_scale) * sw * static_cast<double>(c) * 2.0 * ce.z_loss * log_z;
          GradCoeffs<T> gc;
          gc.alpha = static_cast<T>(a / static_cast<double>(ms.sum));
          gc.beta = static_cast<T>(s * (1.0 - ls));
          gc.gamma = static_cast<T>(s * ls_per_class);
          gc.inv_cap = capped ? static_cast<T>(1.0 / ce.softcap) : T(0);
          if constexpr (kSoft) {
            gc.delta = T(0);
            gc.index = n;
          } else {
            gc.delta = static_cast<T>(s * delta_weight);
            gc.index = static_cast<size_t>(t);
          }
          k.grad(exps, kSoft ? y : nullptr, w, capped ? aligned_in<T>(b.scratch, capped_at) : nullptr, g, n, gc,
                 stream && !b.gathered);
        }
      }
      if (g && (!valid || !finite_targets)) std::fill(g, g + n, T(0));
      if (none) *b.row<T>(kLoss, r) = static_cast<T>(row_loss + row_z);
      if (kLse >= 0) *b.row<T>(kLse, r) = static_cast<T>(row_lse);
      *b.row<double>(kSumLoss, r) = row_loss;
      *b.row<double>(kSumWeight, r) = row_weight;
      if (with_z) {
        *b.row<double>(kSumZ, r) = row_z;
        *b.row<double>(kSumRows, r) = row_count;
      }
      if (kCorrect >= 0) {
        *b.row<double>(kCorrect, r) = row_correct;
        *b.row<double>(kCounted, r) = valid ? 1.0 : 0.0;
      }
    }
  }, policy);
  bad.throw_if_any(classes, ignore);
  bad_soft.throw_if_any();
  const double total = d.row_value_sum(kSumLoss), z_total = with_z ? d.row_value_sum(kSumZ) : 0.0;
  if (extras.accuracy) *extras.accuracy = d.row_value_sum(kCorrect) / d.row_value_sum(kCounted);
  const double z_part = !with_z ? 0.0 : mean ? z_total / d.row_value_sum(kSumRows) : z_total;
  if (extras.z_loss) *extras.z_loss = z_part;
  if (chunk) {
    chunk->loss = total;
    chunk->weight = d.row_value_sum(kSumWeight);
    chunk->z = z_total;
    chunk->rows = with_z ? d.row_value_sum(kSumRows) : 0.0;
  }
  if (!mean) return total + z_total;
  return total / d.row_value_sum(kSumWeight) + z_part;
}

}  // namespace

template <class T, class Index>
void cross_entropy_chunk(ArrayView<const T> logits, ArrayView<const Index> target, const LossOptions& options,
                         const CrossEntropyOptions& ce, const LossWeights<T>& weights, ArrayView<T> loss,
                         const LossGrad<T>& grad, CrossEntropyChunk& chunk) {
  cross_entropy_impl<T, Index>(logits, target, options, ce, weights, loss, grad, {}, &chunk);
}
#define LOGITKIT_CHUNK(T, Index)                                                                              \
  template void cross_entropy_chunk<T, Index>(ArrayView<const T>, ArrayView<const Index>, const LossOptions&, \
                                              const CrossEntropyOptions&, const LossWeights<T>&, ArrayView<T>, \
                                              const LossGrad<T>&, CrossEntropyChunk&);
LOGITKIT_CHUNK(float, int32_t)
LOGITKIT_CHUNK(float, int64_t)
LOGITKIT_CHUNK(double, int32_t)
LOGITKIT_CHUNK(double, int64_t)
#undef LOGITKIT_CHUNK

#define LOGITKIT_SPECIALIZE(T, Index)                                                                          \
  template <>                                                                                                  \
  double cross_entropy<T, Index>(InputView<T> logits, ArrayView<const Index> target, const LossOptions& options, \
                                 const CrossEntropyOptions& ce, const LossWeights<T>& weights, ArrayView<T> loss,  \
                                 const LossGrad<T>& grad, const CrossEntropyExtras<T>& extras) {               \
    return cross_entropy_impl<T, Index>(logits, target, options, ce, weights, loss, grad, extras);             \
  }
LOGITKIT_SPECIALIZE(float, int32_t)
LOGITKIT_SPECIALIZE(float, int64_t)
LOGITKIT_SPECIALIZE(float, float)
LOGITKIT_SPECIALIZE(double, int32_t)
LOGITKIT_SPECIALIZE(double, int64_t)
LOGITKIT_SPECIALIZE(double, double)
#undef LOGITKIT_SPECIALIZE

}  // namespace logitkit
