// distill_loss: operands declared to the row driver (runtime/row_driver.h). Per row: the two
// maxima and exp-value rows from the softmax slot (kept in per-thread scratch, in L2 for rows that
// fit), the divergence's terms from them (distill slot), and with the gradient the projection
// g = k (u - p sum u) streamed to the caller's buffer, which may be the student's logits.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "logitkit/distill.h"
#include "logitkit/error.h"
#include "logitkit/runtime.h"
#include "cross_entropy/cross_entropy_kernels.h"
#include "distill/distill_kernels.h"
#include "runtime/bad_row.h"
#include "runtime/kernel_table.h"
#include "runtime/loss_support.h"
#include "runtime/row_driver.h"
#include "softmax/softmax_kernels.h"

namespace logitkit {
namespace {

DivergenceKind kind_of(const DistillOptions& o) {
  switch (o.divergence) {
    case Divergence::kForwardKL: return DivergenceKind::kForwardKL;
    case Divergence::kReverseKL: return DivergenceKind::kReverseKL;
    case Divergence::kTVD: return DivergenceKind::kTVD;
    case Divergence::kJSD:
      if (!(o.beta >= 0.0 && o.beta <= 1.0))
        throw Error(Error::Kind::kInvalidArgument, "beta", "must be in [0, 1], got " + shortest_repr(o.beta));
      // the limits as Liger-Kernel and TRL define them (the mixture formula gives 0 there)
      if (o.beta == 0.0) return DivergenceKind::kForwardKL;
      if (o.beta == 1.0) return DivergenceKind::kReverseKL;
      return DivergenceKind::kJSD;
  }
  throw Error(Error::Kind::kInvalidArgument, "divergence",
              "not a Divergence value: " + std::to_string(static_cast<int>(o.divergence)));
}

template <class T>
double distill_impl(ArrayView<const T> student, ArrayView<const T> teacher, const LossOptions& options,
                    const DistillOptions& o, ArrayView<const T> sample_weight, ArrayView<T> loss,
                    const LossGrad<T>& grad) {
  check_loss_outputs(options.reduction, loss, grad);
  const DivergenceKind kind = kind_of(o);
  const bool none = options.reduction == Reduction::kNone, mean = options.reduction == Reduction::kMean;
  const bool row_weighted = given(sample_weight), with_grad = given(grad.grad);
  RowDriver d(options.axis);
  const int kS = d.input(student, "student");
  const int kT = d.input(teacher, "teacher");
  const int kRowWeight = row_weighted ? d.input(sample_weight, "sample_weight", RowExtent::kScalar) : -1;
  const bool per_row_scale = none && given(grad.grad_output_rows);
  const int kGradOutput = per_row_scale ? d.input(grad.grad_output_rows, "grad_output", RowExtent::kScalar) : -1;
  const int kLoss = none ? d.output(loss, "loss", RowExtent::kScalar) : -1;
  const int kGrad = with_grad ? d.output(grad.grad, "grad") : -1;
  const int kSumLoss = d.row_values(), kSumWeight = d.row_values();
  d.check();
  const T c = inverse_temperature<T>(o.temperature);
  const double t_factor = o.temperature_squared ? o.temperature * o.temperature : 1.0;
  double scale = grad.grad_output;
  if (with_grad && mean) {  // the normaliser before any gradient is written
    double total = static_cast<double>(d.rows());
    if (row_weighted) {
      RowDriver w(options.axis);
      w.input(student, "student", RowExtent::kRow, 0, RowRead::kStrided);  // the shape only
      const int kW = w.input(sample_weight, "sample_weight", RowExtent::kScalar);
      const int kSum = w.row_values();
      RowPolicy p;
      p.work_per_row = 1;
      w.run([&](const RowBatch& b) {
        for (size_t r = 0; r < b.rows; ++r) *b.row<double>(kSum, r) = static_cast<double>(*b.row<const T>(kW, r));
      }, p);
      total = w.row_value_sum(kSum);
    }
    scale /= total;
  }
  const SoftmaxKernels<T>& sk = kernels().softmax.get<T>();
  const DistillKernels<T>& k = kernels().distill.get<T>();
  const CrossEntropyKernels<T>& ce = kernels().cross_entropy.get<T>();
  const size_t n = static_cast<size_t>(d.n()), stride = (n + 15) / 16 * 16;
  const bool stream = with_grad && static_cast<size_t>(d.rows() * d.n()) * sizeof(T) >= last_level_cache_bytes() &&
                      n * sizeof(T) >= 4096;
  // Forward and reverse KL have closed forms over the stored exp rows; JSD and TVD go through the
  // terms pass, which also stores u (d loss / d log p) for the projection.
  const bool closed_form = kind == DivergenceKind::kForwardKL || kind == DivergenceKind::kReverseKL;
  RowPolicy policy;
  policy.scratch_bytes = (with_grad && !closed_form ? 3 : 2) * stride * sizeof(T) + 64;
  const double cd = static_cast<double>(c);
  d.run([&](const RowBatch& b) {
    T* es = reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(b.scratch) + 63) / 64 * 64);
    T* et = es + stride;
    T* u = with_grad && !closed_form ? et + stride : nullptr;
    for (size_t r = 0; r < b.rows; ++r) {
      const T* s = b.row<const T>(kS, r);
      const T* t = b.row<const T>(kT, r);
      const double sw = row_weighted ? static_cast<double>(*b.row<const T>(kRowWeight, r)) : 1.0;
      T* g = with_grad ? b.row<T>(kGrad, r) : nullptr;
      const bool streamed = stream && !b.gathered;
      double divergence = 0.0;  // no classes: an empty sum, the row still counted by "batchmean"
      if (n > 0) {
        DivergenceRow<T> row;
        row.c = c;
        row.beta = static_cast<T>(o.beta);
        row.max_s = sk.max(s, n);
        row.max_t = sk.max(t, n);
        // the exp rows each path reads: the forward KL's loss alone needs only q's, the reverse
        // KL only p's
        const bool store_s = with_grad || kind != DivergenceKind::kForwardKL;
        const bool store_t = kind != DivergenceKind::kReverseKL;
        const T sum_s = store_s ? sk.exp_store_sum(s, es, n, row.max_s, c) : sk.exp_sum(s, n, row.max_s, c);
        const T sum_t = store_t ? sk.exp_store_sum(t, et, n, row.max_t, c) : sk.exp_sum(t, n, row.max_t, c);
        const double log_ratio = std::log(static_cast<double>(sum_t)) - std::log(static_cast<double>(sum_s));
        // The sums below take t and s relative to offsets, the rows' maxima where both are finite:
        // their gap then cancels exactly instead of against a float sum of huge differences
        // (two uniform rows 131072 apart gave a KL of -0.003 in float32). Otherwise 0 offsets.
        const bool offsets = std::isfinite(row.max_t) && std::isfinite(row.max_s);
        const T off_t = offsets ? row.max_t : T(0), off_s = offsets ? row.max_s : T(0);
        const double max_gap = offsets ? 0.0 : static_cast<double>(row.max_t) - static_cast<double>(row.max_s);
        const double go = per_row_scale ? static_cast<double>(*b.row<const T>(kGradOutput, r)) : scale;
        const double kg = go * sw * t_factor * cd;  // d (weighted loss) / d (the divergence's log p)
        if (kind == DivergenceKind::kForwardKL) {
          // KL(q || p) = c sum q (t - s) - c (max_t - max_s) - log(S_t / S_s); gradient k (p - q)
          divergence = cd * k.weighted_difference_sum(et, t, s, n, off_t, off_s) / static_cast<double>(sum_t) - cd * max_gap -
                       log_ratio;
          if (g) {
            GradCoeffs<T> gc{};
            gc.alpha = static_cast<T>(kg / static_cast<double>(sum_s));
            gc.beta = static_cast<T>(kg / static_cast<double>(sum_t));
            gc.index = n;
            ce.grad(es, et, nullptr, nullptr, g, n, gc, streamed);
          }
        } else if (kind == DivergenceKind::kReverseKL) {
          // KL(p || q) = c sum p (s - t) + c (max_t - max_s) + log(S_t / S_s); gradient
          // k p (log p - log q - KL) = (k / S_s) e_s (c ((s - max_s) - (t - max_t)) + log(S_t / S_s) - KL)
          divergence = cd * k.weighted_difference_sum(es, s, t, n, off_s, off_t) / static_cast<double>(sum_s) + cd * max_gap +
                       log_ratio;
          if (g)
            k.reverse_kl_grad(es, s, t, g, n, static_cast<T>(kg / static_cast<double>(sum_s)), c,
                              static_cast<T>(log_ratio - divergence), row.max_s, row.max_t, streamed);
        } else {
          row.inv_sum_s = T(1) / sum_s;
          row.inv_sum_t = T(1) / sum_t;
          row.log_sum_s = static_cast<T>(std::log(static_cast<double>(sum_s)));
          row.log_sum_t = static_cast<T>(std::log(static_cast<double>(sum_t)));
          const DivergenceSums sums = k.terms(kind, es, et, s, t, u, n, row);
          divergence = sums.loss;
          if (g) k.project(u, es, g, n, static_cast<T>(kg), static_cast<T>(static_cast<double>(row.inv_sum_s) * sums.u),
                           streamed);
        }
      }
      const double row_loss = sw * t_factor * divergence;
      if (none) *b.row<T>(kLoss, r) = static_cast<T>(row_loss);
      *b.row<double>(kSumLoss, r) = row_loss;
      *b.row<double>(kSumWeight, r) = sw;
    }
  }, policy);
  const double total = d.row_value_sum(kSumLoss);
  return mean ? total / d.row_value_sum(kSumWeight) : total;
}

template <class Index>
bool check_ids(const Index* ids, size_t k, int64_t classes, std::vector<int64_t>& sorted, std::string& what) {
  sorted.assign(ids, ids + k);
  for (const int64_t id : sorted) {
    if (id < 0 || id >= classes) {
      what = "class id " + std::to_string(id) + " is out of range [0, " + std::to_string(classes) + ")";
      return false;
    }
  }
  std::sort(sorted.begin(), sorted.end());
  const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end()) {
    what = "class id " + std::to_string(*dup) + " appears twice in one row";
    return false;
  }
  return true;
}

// Per row: the student's max and exp values (softmax slot; kept in the gradient), the teacher's k
// probabilities in double, the loss over the k ids, and the gradient alpha e - q scattered.
// Memory-bound on the student (one read, one write of C values per row; the teacher is k values).
template <class T, class Index>
double distill_topk_impl(ArrayView<const T> student, ArrayView<const T> teacher, ArrayView<const Index> ids,
                         const LossOptions& options, const DistillOptions& o, ArrayView<const T> sample_weight,
                         ArrayView<T> loss, const LossGrad<T>& grad) {
  check_loss_outputs(options.reduction, loss, grad);
  if (o.divergence != Divergence::kForwardKL)
    throw Error(Error::Kind::kInvalidArgument, "divergence", "a sparse teacher supports the forward KL only");
  const bool none = options.reduction == Reduction::kNone, mean = options.reduction == Reduction::kMean;
  const bool row_weighted = given(sample_weight), with_grad = given(grad.grad);
  RowDriver d(options.axis);
  const int kS = d.input(student, "student");
  const int64_t k = teacher.ndim > 0 && options.axis >= -teacher.ndim && options.axis < teacher.ndim
                        ? teacher.shape[options.axis < 0 ? options.axis + teacher.ndim : options.axis]
                        : 0;
  const int kQ = d.input(teacher, "teacher_logprobs", RowExtent::kK, k);
  const int kIds = d.input(ids, "teacher_ids", RowExtent::kK, k);
  const int kRowWeight = row_weighted ? d.input(sample_weight, "sample_weight", RowExtent::kScalar) : -1;
  const bool per_row_scale = none && given(grad.grad_output_rows);
  const int kGradOutput = per_row_scale ? d.input(grad.grad_output_rows, "grad_output", RowExtent::kScalar) : -1;
  const int kLoss = none ? d.output(loss, "loss", RowExtent::kScalar) : -1;
  const int kGrad = with_grad ? d.output(grad.grad, "grad") : -1;
  const int kSumLoss = d.row_values(), kSumWeight = d.row_values();
  d.check();
  const int64_t classes = d.n();
  const size_t n = static_cast<size_t>(classes), kk = static_cast<size_t>(k);
  if (k > classes)
    throw Error(Error::Kind::kInvalidArgument, "teacher_ids",
                std::to_string(k) + " ids per row for " + std::to_string(classes) + " classes");
  const T c = inverse_temperature<T>(o.temperature);
  const double t_factor = o.temperature_squared ? o.temperature * o.temperature : 1.0;
  double scale = grad.grad_output;
  BadRow bad;
  if (with_grad) {  // ids checked and "mean"'s normaliser summed before any gradient is written
    RowDriver pre(options.axis);
    pre.input(student, "student", RowExtent::kRow, 0, RowRead::kStrided);
    const int kPreIds = pre.input(ids, "teacher_ids", RowExtent::kK, k);
    const int kW = row_weighted ? pre.input(sample_weight, "sample_weight", RowExtent::kScalar) : -1;
    const int kSum = pre.row_values();
    pre.run([&](const RowBatch& b) {
      std::vector<int64_t> sorted;
      std::string what;
      for (size_t r = 0; r < b.rows; ++r) {
        if (!check_ids(b.row<const Index>(kPreIds, r), kk, classes, sorted, what))
          bad.report(b.first_row + static_cast<int64_t>(r), what);
        *b.row<double>(kSum, r) = row_weighted ? static_cast<double>(*b.row<const T>(kW, r)) : 1.0;
      }
    });
    bad.throw_if_any("teacher_ids");
    if (mean) scale /= pre.row_value_sum(kSum);
  }
  const SoftmaxKernels<T>& sk = kernels().softmax.get<T>();
  const CrossEntropyKernels<T>& ce = kernels().cross_entropy.get<T>();
  RowPolicy policy;
  if (!with_grad) policy.scratch_bytes = n * sizeof(T);  // exp values without a gradient to hold them
  d.run([&](const RowBatch& b) {
    std::vector<int64_t> sorted;
    std::vector<double> q(kk);
    std::string what;
    for (size_t r = 0; r < b.rows; ++r) {
      const T* s = b.row<const T>(kS, r);
      const T* lq = b.row<const T>(kQ, r);
      const Index* id = b.row<const Index>(kIds, r);
      T* g = with_grad ? b.row<T>(kGrad, r) : nullptr;
      double row_loss = std::numeric_limits<double>::quiet_NaN();
      const double sw = row_weighted ? static_cast<double>(*b.row<const T>(kRowWeight, r)) : 1.0;
      if (!check_ids(id, kk, classes, sorted, what)) {
        bad.report(b.first_row + static_cast<int64_t>(r), what);
        if (g) std::fill(g, g + n, T(0));
      } else if (kk == 0) {  // no teacher entries (no classes): an empty sum
        row_loss = 0.0;
        if (g) std::fill(g, g + n, T(0));
      } else {
        // the teacher: q_j = softmax_j(c lq_j) over its k entries, log q_j in double
        double mq = -std::numeric_limits<double>::infinity();
        for (size_t j = 0; j < kk; ++j) mq = std::max(mq, static_cast<double>(c) * static_cast<double>(lq[j]));
        double qsum = 0.0;
        for (size_t j = 0; j < kk; ++j) qsum += q[j] = std::exp(static_cast<double>(c) * static_cast<double>(lq[j]) - mq);
        const double log_qsum = std::log(qsum);
        // the student: log p_i = c (s_i - max) - log S
        const T ms = sk.max(s, n);
        // the exp values after every read of s that precedes them: g may be the student's logits;
        // the student logits at the ids are read first
        double cross = 0.0;  // sum_j q_j (log q_j - c (s_id - max))
        for (size_t j = 0; j < kk; ++j) {
          if (q[j] == 0.0) continue;
          const double qj = q[j] / qsum;
          const double log_qj = static_cast<double>(c) * static_cast<double>(lq[j]) - mq - log_qsum;
          cross += qj * (log_qj - scaled_difference_scalar(static_cast<double>(s[id[j]]), static_cast<double>(ms),
                                                           static_cast<double>(c)));
        }
        T* e = g ? g : static_cast<T*>(b.scratch);
        const T sum = sk.exp_store_sum(s, e, n, ms, c);
        row_loss = sw * t_factor * (cross + std::log(static_cast<double>(sum)));
        if (g) {
          const double go = per_row_scale ? static_cast<double>(*b.row<const T>(kGradOutput, r)) : scale;
          const double kg = go * sw * t_factor * static_cast<double>(c);
          GradCoeffs<T> gc{};
          gc.alpha = static_cast<T>(kg / static_cast<double>(sum));
          gc.index = n;
          ce.grad(e, nullptr, nullptr, nullptr, g, n, gc, false);
          for (size_t j = 0; j < kk; ++j) g[id[j]] = static_cast<T>(static_cast<double>(g[id[j]]) - kg * q[j] / qsum);
        }
      }
      if (none) *b.row<T>(kLoss, r) = static_cast<T>(row_loss);
      *b.row<double>(kSumLoss, r) = row_loss;
      *b.row<double>(kSumWeight, r) = sw;
    }
  }, policy);
  bad.throw_if_any("teacher_ids");
  const double total = d.row_value_sum(kSumLoss);
  return mean ? total / d.row_value_sum(kSumWeight) : total;
}

// sum_{i != t} exp(c (x_i - m)) into e (two calls around the target, so that nothing is
// subtracted), with e_t = 0.
template <class T>
double exp_store_sum_without(const SoftmaxKernels<T>& sk, const T* x, T* e, size_t n, size_t t, T m, T c) {
  double sum = static_cast<double>(sk.exp_store_sum(x, e, t, m, c));
  if (t + 1 < n) sum += static_cast<double>(sk.exp_store_sum(x + t + 1, e + t + 1, n - t - 1, m, c));
  e[t] = T(0);
  return sum;
}

double xlogy_ratio(double q, double log_q, double log_p) { return q > 0.0 ? q * (log_q - log_p) : 0.0; }

// dkd_loss and nkd_loss through class_index_loss, the teacher as its second input. Per row: the
// maxima, the non-target exp rows of student and teacher at T (L2 scratch), the target's terms in
// double; NKD adds the student's exp row at temperature 1 when T != 1. Compute-bound by the exps
// (2 per element pair, 3 for NKD at T != 1) on AVX2, as kl_div.
template <class T, class Index>
double distill_target_impl(ArrayView<const T> student, ArrayView<const T> teacher, ArrayView<const Index> target,
                           const LossOptions& options, const TargetDistillOptions& o,
                           ArrayView<const T> sample_weight, ArrayView<T> loss, const LossGrad<T>& grad) {
  const bool dkd = o.kind == TargetDistill::kDecoupled;
  if (!dkd && o.kind != TargetDistill::kNormalized)
    throw Error(Error::Kind::kInvalidArgument, "kind", "not a TargetDistill value: " + std::to_string(int(o.kind)));
  for (const auto& [name, v] : {std::pair<const char*, double>{"alpha", o.alpha}, {"beta", o.beta}, {"gamma", o.gamma}})
    if (!std::isfinite(v)) throw Error(Error::Kind::kInvalidArgument, name, "must be finite, got " + shortest_repr(v));
  const T c = inverse_temperature<T>(o.temperature);
  const double cd = static_cast<double>(c), t2 = o.temperature * o.temperature;
  const SoftmaxKernels<T>& sk = kernels().softmax.get<T>();
  const DistillKernels<T>& dk = kernels().distill.get<T>();
  const CrossEntropyKernels<T>& ce = kernels().cross_entropy.get<T>();
  const int axis = options.axis < 0 ? options.axis + student.ndim : options.axis;
  const size_t n = axis >= 0 && axis < student.ndim && student.data ? static_cast<size_t>(student.shape[axis]) : 0;
  const size_t stride = (n + 15) / 16 * 16;
  RowPolicy policy;
  policy.scratch_bytes = 3 * stride * sizeof(T) + 64;
  LossWeights<T> weights;
  weights.sample_weight = sample_weight;
  return class_index_loss<T, Index>(
      student, "student", target, options, weights, loss, grad, policy,
      [&](const T* s, const T* tt, size_t t, T* g, double kk, const RowBatch& b) -> double {
        T* es = reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(b.scratch) + 63) / 64 * 64);
        T* et = es + stride;
        T* es1 = et + stride;
        const T ms = sk.max(s, n), mt = sk.max(tt, n);
        const double zs_t = scaled_difference_scalar(static_cast<double>(s[t]), static_cast<double>(ms), cd);
        const double zt_t = scaled_difference_scalar(static_cast<double>(tt[t]), static_cast<double>(mt), cd);
        const double zs1_t = static_cast<double>(s[t]) - static_cast<double>(ms);
        const double zt1_t = static_cast<double>(tt[t]) - static_cast<double>(mt);
        // NKD at T != 1: the student's exp row at temperature 1, read before any write to g
        const bool own_t1 = !dkd && c != T(1);
        const double sum_s1 = own_t1 ? static_cast<double>(sk.exp_store_sum(s, es1, n, ms, T(1))) : 0.0;
        const double sum_t1 = own_t1 ? static_cast<double>(sk.exp_sum(tt, n, mt, T(1))) : 0.0;
        const double rest_s = exp_store_sum_without(sk, s, es, n, t, ms, c);
        const double rest_t = exp_store_sum_without(sk, tt, et, n, t, mt, c);
        const double log_rest_s = std::log(rest_s), log_rest_t = std::log(rest_t);
        const double all_s = rest_s + std::exp(zs_t), all_t = rest_t + std::exp(zt_t);
        if (dkd) {
          const double lp_t = zs_t - std::log(all_s), lq_t = zt_t - std::log(all_t);
          const double lp_o = log_rest_s - std::log(all_s), lq_o = log_rest_t - std::log(all_t);
          const double p_t = std::exp(lp_t), q_t = std::exp(lq_t);
          const double tckd = xlogy_ratio(q_t, lq_t, lp_t) + xlogy_ratio(std::exp(lq_o), lq_o, lp_o);
          double nckd = 0.0;  // no teacher mass off the target: nothing to match
          if (rest_t > 0.0) {
            DivergenceRow<T> row{c, ms, mt, static_cast<T>(1.0 / rest_s), static_cast<T>(1.0 / rest_t),
                                 static_cast<T>(log_rest_s), static_cast<T>(log_rest_t), T(0)};
            nckd = rest_s > 0.0 ? dk.terms(DivergenceKind::kForwardKL, es, et, s, tt, nullptr, n, row).loss
                                : std::numeric_limits<double>::infinity();
          }
          if (g) {
            const double k = kk * t2 * cd;
            const double a = rest_s > 0.0 ? k * (o.alpha * (q_t - p_t) + o.beta) / rest_s : 0.0;
            const double bb = rest_t > 0.0 ? -k * o.beta / rest_t : 0.0;
            dk.combine3(es, et, es, g, n, static_cast<T>(a), static_cast<T>(bb), T(0));
            g[t] = static_cast<T>(k * o.alpha * (p_t - q_t));
          }
          return t2 * (o.alpha * tckd + o.beta * nckd);
        }
        // NKD: -q1_t log p1_t - gamma T^2 sum_{i != t} q^_i log p^_i
        const double s1 = own_t1 ? sum_s1 : all_s, st1 = own_t1 ? sum_t1 : all_t;
        const double lp1_t = zs1_t - std::log(s1), q1_t = std::exp(zt1_t - std::log(st1));
        double non_target = 0.0;  // -sum q^ log p^ = log rest_s - c sum et (s - max) / rest_t
        if (rest_t > 0.0) {
          const SoftDots d = ce.soft_dots(s, et, nullptr, n, ms);
          non_target = log_rest_s - cd * d.shifted / rest_t;
        }
        if (g) {
          const double k = kk * o.gamma * t2 * cd;
          const double a1 = kk * q1_t / s1;
          const double a = rest_s > 0.0 && rest_t > 0.0 ? k / rest_s : 0.0;
          const double bb = rest_t > 0.0 ? -k / rest_t : 0.0;
          if (own_t1) {
            dk.combine3(es1, es, et, g, n, static_cast<T>(a1), static_cast<T>(a), static_cast<T>(bb));
          } else {  // T = 1: one exp row for both terms
            dk.combine3(es, et, es, g, n, static_cast<T>(a1 + a), static_cast<T>(bb), T(0));
          }
          g[t] = static_cast<T>(kk * q1_t * std::expm1(lp1_t));
        }
        return (q1_t > 0.0 ? -q1_t * lp1_t : 0.0) + o.gamma * t2 * non_target;
      },
      teacher, "teacher");
}

}  // namespace

#define LOGITKIT_SPECIALIZE_TARGET(T, Index)                                                                    \
  template <>                                                                                                   \
  double distill_target_loss<T, Index>(InputView<T> student, InputView<T> teacher, ArrayView<const Index> target, \
                                       const LossOptions& options, const TargetDistillOptions& distill,          \
                                       ArrayView<const T> sample_weight, ArrayView<T> loss, const LossGrad<T>& grad) { \
    return distill_target_impl<T, Index>(student, teacher, target, options, distill, sample_weight, loss, grad);  \
  }
LOGITKIT_SPECIALIZE_TARGET(float, int32_t)
LOGITKIT_SPECIALIZE_TARGET(float, int64_t)
LOGITKIT_SPECIALIZE_TARGET(double, int32_t)
LOGITKIT_SPECIALIZE_TARGET(double, int64_t)
#undef LOGITKIT_SPECIALIZE_TARGET

#define LOGITKIT_SPECIALIZE_TOPK(T, Index)                                                                     \
  template <>                                                                                                  \
  double distill_topk_loss<T, Index>(InputView<T> student, InputView<T> teacher, ArrayView<const Index> ids,  \
                                     const LossOptions& options, const DistillOptions& distill,               \
                                     ArrayView<const T> sample_weight, ArrayView<T> loss, const LossGrad<T>& grad) { \
    return distill_topk_impl<T, Index>(student, teacher, ids, options, distill, sample_weight, loss, grad);   \
  }
LOGITKIT_SPECIALIZE_TOPK(float, int32_t)
LOGITKIT_SPECIALIZE_TOPK(float, int64_t)
LOGITKIT_SPECIALIZE_TOPK(double, int32_t)
LOGITKIT_SPECIALIZE_TOPK(double, int64_t)
#undef LOGITKIT_SPECIALIZE_TOPK

template <>
double distill_loss<float>(InputView<float> student, InputView<float> teacher, const LossOptions& options,
                           const DistillOptions& distill, ArrayView<const float> sample_weight, ArrayView<float> loss,
                           const LossGrad<float>& grad) {
  return distill_impl<float>(student, teacher, options, distill, sample_weight, loss, grad);
}
template <>
double distill_loss<double>(InputView<double> student, InputView<double> teacher, const LossOptions& options,
                            const DistillOptions& distill, ArrayView<const double> sample_weight,
                            ArrayView<double> loss, const LossGrad<double>& grad) {
  return distill_impl<double>(student, teacher, options, distill, sample_weight, loss, grad);
}

}  // namespace logitkit
