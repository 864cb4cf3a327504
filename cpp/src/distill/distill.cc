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
#include <vector>

#include "logitkit/distill.h"
#include "logitkit/error.h"
#include "logitkit/runtime.h"
#include "cross_entropy/cross_entropy_kernels.h"
#include "distill/distill_kernels.h"
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
  const size_t n = static_cast<size_t>(d.n()), stride = (n + 15) / 16 * 16;
  const bool stream = with_grad && static_cast<size_t>(d.rows() * d.n()) * sizeof(T) >= last_level_cache_bytes() &&
                      n * sizeof(T) >= 4096;
  RowPolicy policy;
  policy.scratch_bytes = (with_grad ? 3 : 2) * stride * sizeof(T) + 64;
  d.run([&](const RowBatch& b) {
    T* es = reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(b.scratch) + 63) / 64 * 64);
    T* et = es + stride;
    T* u = with_grad ? et + stride : nullptr;
    for (size_t r = 0; r < b.rows; ++r) {
      const T* s = b.row<const T>(kS, r);
      const T* t = b.row<const T>(kT, r);
      DivergenceRow<T> row;
      row.c = c;
      row.beta = static_cast<T>(o.beta);
      row.max_s = sk.max(s, n);
      row.max_t = sk.max(t, n);
      const T sum_s = sk.exp_store_sum(s, es, n, row.max_s, c), sum_t = sk.exp_store_sum(t, et, n, row.max_t, c);
      row.inv_sum_s = T(1) / sum_s;
      row.inv_sum_t = T(1) / sum_t;
      row.log_sum_s = static_cast<T>(std::log(static_cast<double>(sum_s)));
      row.log_sum_t = static_cast<T>(std::log(static_cast<double>(sum_t)));
      const DivergenceSums sums = k.terms(kind, es, et, s, t, u, n, row);
      const double sw = row_weighted ? static_cast<double>(*b.row<const T>(kRowWeight, r)) : 1.0;
      const double row_loss = sw * t_factor * sums.loss;
      if (with_grad) {
        const double go = per_row_scale ? static_cast<double>(*b.row<const T>(kGradOutput, r)) : scale;
        k.project(u, es, b.row<T>(kGrad, r), n, static_cast<T>(go * sw * t_factor * static_cast<double>(c)),
                  static_cast<T>(static_cast<double>(row.inv_sum_s) * sums.u), stream && !b.gathered);
      }
      if (none) *b.row<T>(kLoss, r) = static_cast<T>(row_loss);
      *b.row<double>(kSumLoss, r) = row_loss;
      *b.row<double>(kSumWeight, r) = sw;
    }
  }, policy);
  const double total = d.row_value_sum(kSumLoss);
  return mean ? total / d.row_value_sum(kSumWeight) : total;
}

// The lowest row whose ids are out of range or repeated (the error path only: a lock is fine).
class BadIds {
 public:
  void report(int64_t row, const std::string& what) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (row < row_) {
      row_ = row;
      what_ = what;
    }
  }
  void throw_if_any() const {
    if (row_ != kNone)
      throw Error(Error::Kind::kInvalidArgument, "teacher_ids", what_ + " (row " + std::to_string(row_) + ")");
  }

 private:
  static constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  std::mutex mutex_;
  int64_t row_ = kNone;
  std::string what_;
};

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
  BadIds bad;
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
    bad.throw_if_any();
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
  bad.throw_if_any();
  const double total = d.row_value_sum(kSumLoss);
  return mean ? total / d.row_value_sum(kSumWeight) : total;
}

}  // namespace

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
