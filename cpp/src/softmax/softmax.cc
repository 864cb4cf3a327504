// softmax / log_softmax / logsumexp drivers: argument checks, N-D row planning, threading, and the
// chunked path that splits one long row across threads. Kernels live in softmax_kernels-inl.h.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "logitkit/error.h"
#include "logitkit/runtime.h"
#include "logitkit/softmax.h"
#include "runtime/cache_sizes.h"
#include "runtime/kernel_table.h"
#include "runtime/row_driver.h"
#include "runtime/rows.h"
#include "simd/block_sum.h"
#include "softmax/softmax_kernels.h"

namespace logitkit {

double scaled_difference_scalar(double a, double b, double c) {
  return c < 1 ? (a * 0.5 - b * 0.5) * (c + c) : (a - b) * c;
}

namespace {

// Rows at least this long are split into chunks across threads; shorter rows are whole tasks.
constexpr int64_t kLongRow = int64_t{1} << 18;
constexpr int64_t kChunk = int64_t{1} << 16;


template <class T>
SoftmaxAlgorithm resolve_algorithm(SoftmaxAlgorithm a, int64_t n) {
  switch (a) {
    case SoftmaxAlgorithm::kAuto:
      // While a row fits in half of L2, the second read of three_pass_reload is a cache hit and
      // it does one exp per element; beyond that two_pass saves a full trip to memory.
      return static_cast<size_t>(n) * sizeof(T) <= l2_cache_bytes() / 2 ? SoftmaxAlgorithm::kThreePassReload
                                                                      : SoftmaxAlgorithm::kTwoPass;
    case SoftmaxAlgorithm::kThreePassReload:
    case SoftmaxAlgorithm::kThreePassRecompute:
    case SoftmaxAlgorithm::kTwoPass:
    case SoftmaxAlgorithm::kOnline:
      return a;
  }
  throw Error(Error::Kind::kInvalidArgument, "algorithm", "unknown softmax algorithm");
}

// NaN-propagating max used to combine chunk maxima.
template <class T>
T combine_max(T a, T b) {
  return (std::isnan(a) || b > a) ? (std::isnan(a) ? a : b) : a;
}

// One long contiguous row, processed as fixed-size chunks in parallel; partial results are
// combined in chunk order so the result does not depend on the thread count, and partial sums by
// BlockSum (as the kernels' blocks), so the error does not grow with the number of chunks.
template <class T>
class LongRow {
 public:
  LongRow(const SoftmaxKernels<T>& k, const T* x, int64_t n) : k_(k), x_(x), n_(n) {
    chunks_ = static_cast<size_t>((n + kChunk - 1) / kChunk);
  }
  size_t len(size_t i) const { return static_cast<size_t>(std::min<int64_t>(kChunk, n_ - int64_t(i) * kChunk)); }
  size_t off(size_t i) const { return i * static_cast<size_t>(kChunk); }

  template <class R, class F>
  R* map(F&& f, int slot) {
    R* parts = thread_scratch<R>(chunks_, slot);
    parallel_for(chunks_, [&](size_t i) { parts[i] = f(off(i), len(i)); });
    return parts;
  }
  template <class F>
  void each(F&& f) {
    parallel_for(chunks_, [&](size_t i) { f(off(i), len(i)); });
  }
  T max() {
    T* m = map<T>([&](size_t o, size_t l) { return k_.max(x_ + o, l); }, 0);
    T out = -std::numeric_limits<T>::infinity();
    for (size_t i = 0; i < chunks_; ++i) out = combine_max(out, m[i]);
    return out;
  }
  // max |x| over the chunks, NaN ignored as by each chunk's kernel.
  T magnitude() {
    T* m = map<T>([&](size_t o, size_t l) { return k_.magnitude(x_ + o, l); }, 0);
    T out = T(0);
    for (size_t i = 0; i < chunks_; ++i) out = std::max(out, m[i]);
    return out;
  }
  T sum(T* parts) const {
    BlockSum<T> s;
    for (size_t i = 0; i < chunks_; ++i) s.add(parts[i]);
    return T(s.value());
  }
  UntiedSum<T> untied(const T* b, T m, T shift, T c) {
    auto* u = map<UntiedSum<T>>(
        [&](size_t o, size_t l) { return k_.untied_sum(x_ + o, b ? b + o : nullptr, l, m, shift, c); }, 1);
    BlockSum<T> sum, tied;
    for (size_t i = 0; i < chunks_; ++i) {
      sum.add(u[i].sum);
      tied.add(u[i].tied_weight);
    }
    return {T(sum.value()), T(tied.value())};
  }

  const SoftmaxKernels<T>& k_;
  const T* x_;
  int64_t n_;
  size_t chunks_;
};

template <class T>
void softmax_long_row_passes(const SoftmaxKernels<T>& k, const T* x, T* y, int64_t n, T c, SoftmaxAlgorithm a);

// The passes, then the dominant entry (dominant_entry-inl.h) after a max pass split across threads.
template <class T>
void softmax_long_row(const SoftmaxKernels<T>& k, const T* x, T* y, int64_t n, T c, SoftmaxAlgorithm a) {
  softmax_long_row_passes(k, x, y, n, c, a);
  if (LongRow<T>(k, y, n).max() >= kDominantThreshold<T>) k.finish_dominant_entries(y, 1, size_t(n), 0);
}

template <class T>
void softmax_long_row_passes(const SoftmaxKernels<T>& k, const T* x, T* y, int64_t n, T c, SoftmaxAlgorithm a) {
  LongRow<T> row(k, x, n);
  if (a == SoftmaxAlgorithm::kTwoPass) {
    auto* parts = row.template map<ExtSum<T>>([&](size_t o, size_t l) { return k.extexp_sum(x + o, l, c); }, 2);
    bool ok = true;
    T e = -std::numeric_limits<T>::infinity();
    for (size_t i = 0; i < row.chunks_; ++i) {
      ok = ok && parts[i].ok;
      e = std::max(e, parts[i].expo);
    }
    BlockSum<T> mant;
    for (size_t i = 0; ok && i < row.chunks_; ++i)
      mant.add(std::ldexp(static_cast<double>(parts[i].mant), static_cast<int>(parts[i].expo - e)));
    const T m = T(mant.value());
    if (ok && m > T(0)) {
      const T inv = T(1) / m;
      const bool stream = static_cast<size_t>(n) * sizeof(T) >= last_level_cache_bytes();
      row.each([&](size_t o, size_t l) { k.extexp_store(x + o, y + o, l, c, inv, e, stream); });
      return;
    }
    a = SoftmaxAlgorithm::kThreePassReload;  // inputs beyond the pair's range (see kernels)
  }
  if (a == SoftmaxAlgorithm::kOnline) {
    auto* parts = row.template map<MaxSum<T>>([&](size_t o, size_t l) { return k.online_sum(x + o, l, c); }, 2);
    T m = std::numeric_limits<T>::lowest();
    for (size_t i = 0; i < row.chunks_; ++i) m = combine_max(m, parts[i].max);
    BlockSum<T> s;
    for (size_t i = 0; i < row.chunks_; ++i)
      s.add(parts[i].sum * static_cast<T>(std::exp(scaled_difference_scalar(parts[i].max, m, c))));
    const T inv = T(1) / T(s.value());
    row.each([&](size_t o, size_t l) { k.exp_scale_store(x + o, y + o, l, m, c, inv); });
    return;
  }
  // As softmax_row: no max shift (and no max pass) for logits within kUnshiftedExpLimit.
  const T magnitude = row.magnitude();
  const bool unshifted = unshifted_exp_ok(magnitude, c, static_cast<size_t>(n));
  if (unshifted && a == SoftmaxAlgorithm::kThreePassReload) {
    const T inv = T(1) / row.sum(row.template map<T>(
                             [&](size_t o, size_t l) { return k.exp_store_sum_unshifted(x + o, y + o, l, c); }, 1));
    row.each([&](size_t o, size_t l) { k.scale(y + o, y + o, l, inv); });
    return;
  }
  const T m = unshifted ? T(0) : row.max();
  if (a == SoftmaxAlgorithm::kThreePassRecompute) {
    const T inv = T(1) / row.sum(row.template map<T>([&](size_t o, size_t l) { return k.exp_sum(x + o, l, m, c); }, 1));
    row.each([&](size_t o, size_t l) { k.exp_scale_store(x + o, y + o, l, m, c, inv); });
    return;
  }
  const T inv = T(1) / row.sum(row.template map<T>([&](size_t o, size_t l) { return k.exp_store_sum(x + o, y + o, l, m, c); }, 1));
  row.each([&](size_t o, size_t l) { k.scale(y + o, y + o, l, inv); });
}

template <class T>
void log_softmax_long_row(const SoftmaxKernels<T>& k, const T* x, T* y, int64_t n, T c) {
  LongRow<T> row(k, x, n);
  const T m = row.max();
  if (std::isfinite(m)) {
    const T lse = k.log_sum_from_untied(row.untied(nullptr, m, m, c));
    row.each([&](size_t o, size_t l) { k.shift_store(x + o, y + o, l, m, c, lse); });
  } else {
    const T lse = std::log(row.sum(row.template map<T>([&](size_t o, size_t l) { return k.exp_sum(x + o, l, T(0), c); }, 1)));
    row.each([&](size_t o, size_t l) { k.shift_store(x + o, y + o, l, T(0), c, lse); });
  }
}

template <class T>
void logsumexp_long_row(const SoftmaxKernels<T>& k, const T* x, const T* b, int64_t n, T* out, T* sign) {
  LongRow<T> row(k, x, n);
  T m;
  if (b) {
    T* parts = row.template map<T>([&](size_t o, size_t l) { return k.weighted_max(x + o, b + o, l); }, 0);
    m = -std::numeric_limits<T>::infinity();
    for (size_t i = 0; i < row.chunks_; ++i) m = combine_max(m, parts[i]);
  } else {
    m = row.max();
  }
  const UntiedSum<T> u = row.untied(b, m, std::isfinite(m) ? m : T(0), T(1));  // see logsumexp_row
  k.finish_logsumexp(m, u, out, sign);
}

template <class T>
void softmax_impl(ArrayView<const T> x, ArrayView<T> y, int axis, const SoftmaxOptions& options, bool log) {
  RowDriver d(axis);
  const int kX = d.input(x, "x"), kY = d.output(y, "y");
  d.check();
  const T c = inverse_temperature<T>(options.temperature);
  const SoftmaxAlgorithm algorithm = resolve_algorithm<T>(options.algorithm, d.n());
  if (x.size() == 0) return;
  const SoftmaxKernels<T>& k = kernels().softmax.get<T>();
  const size_t n = static_cast<size_t>(d.n());
  const bool reload = log || algorithm == SoftmaxAlgorithm::kThreePassReload;
  RowPolicy policy;
  if (d.rows_contiguous()) {
    if (d.n() >= kLongRow) {  // each row split across threads
      d.run_serial([&](const RowBatch& b) {
        if (log) {
          log_softmax_long_row(k, b.data<const T>(kX), b.data<T>(kY), d.n(), c);
        } else {
          softmax_long_row(k, b.data<const T>(kX), b.data<T>(kY), d.n(), c, algorithm);
        }
      });
      return;
    }
    // Outputs beyond the last-level cache: y is written with non-temporal stores (through L1 or
    // L2 scratch), so memory sees one read of x and one write of y, as a copy does.
    if (reload && static_cast<size_t>(d.rows()) * n * sizeof(T) >= last_level_cache_bytes()) {
      const auto streamed = log ? k.log_softmax_rows_streamed : k.softmax_rows_streamed;
      policy.scratch_bytes = streamed_scratch_elements<T>(n) * sizeof(T);
      d.run(
          [&](const RowBatch& b) {
            streamed(b.data<const T>(kX), b.data<T>(kY), b.rows, n, b.ld[kX], b.ld[kY], c, static_cast<T*>(b.scratch));
          },
          policy);
      return;
    }
    if (reload && pipelines_rows(static_cast<size_t>(d.n()), sizeof(T))) policy.split = RowPolicy::Split::kPipelined;
  }
  d.run(
      [&](const RowBatch& b) {
        if (log) {
          k.log_softmax_rows(b.data<const T>(kX), b.data<T>(kY), b.rows, n, b.ld[kX], b.ld[kY], c);
        } else {
          k.softmax_rows(b.data<const T>(kX), b.data<T>(kY), b.rows, n, b.ld[kX], b.ld[kY], c, algorithm);
        }
      },
      policy);
}

template <class T>
void logsumexp_impl(ArrayView<const T> x, ArrayView<T> out, int axis, ArrayView<const T> b, ArrayView<T> sign) {
  const bool weighted = b.data != nullptr, signed_out = sign.data != nullptr;
  RowDriver d(axis);
  const int kX = d.input(x, "x"), kOut = d.output(out, "out", RowExtent::kScalar);
  const int kB = weighted ? d.input(b, "b") : -1;
  const int kSign = signed_out ? d.output(sign, "sign", RowExtent::kScalar) : -1;
  d.check();
  const SoftmaxKernels<T>& k = kernels().softmax.get<T>();
  const size_t n = static_cast<size_t>(d.n());
  RowPolicy policy;
  if (d.rows_contiguous()) {
    if (d.n() >= kLongRow) {
      d.run_serial([&](const RowBatch& r) {
        logsumexp_long_row(k, r.data<const T>(kX), weighted ? r.data<const T>(kB) : nullptr, d.n(), r.data<T>(kOut),
                           signed_out ? r.data<T>(kSign) : nullptr);
      });
      return;
    }
    if (!weighted && pipelines_rows(static_cast<size_t>(d.n()), sizeof(T))) policy.split = RowPolicy::Split::kPipelined;
  }
  d.run(
      [&](const RowBatch& r) {
        T* o = r.data<T>(kOut);
        T* s = signed_out ? r.data<T>(kSign) : nullptr;
        if (n == 0) {  // the empty sum is 0
          for (size_t t = 0; t < r.rows; ++t) {
            o[ptrdiff_t(t) * r.ld[kOut]] = -std::numeric_limits<T>::infinity();
            if (s) s[ptrdiff_t(t) * r.ld[kSign]] = T(0);
          }
          return;
        }
        k.logsumexp_rows(r.data<const T>(kX), weighted ? r.data<const T>(kB) : nullptr, o, s, r.rows, n, r.ld[kX],
                         weighted ? r.ld[kB] : 0, r.ld[kOut], signed_out ? r.ld[kSign] : 0);
      },
      policy);
}

}  // namespace

template <class T>
void softmax_row_default(const T* x, T* y, int64_t n) {
  const SoftmaxKernels<T>& k = kernels().softmax.get<T>();
  const SoftmaxAlgorithm a = resolve_algorithm<T>(SoftmaxAlgorithm::kAuto, n);
  if (n >= kLongRow) {
    softmax_long_row(k, x, y, n, T(1), a);
  } else {
    k.softmax_rows(x, y, 1, static_cast<size_t>(n), 0, 0, T(1), a);
  }
}
template void softmax_row_default<float>(const float*, float*, int64_t);
template void softmax_row_default<double>(const double*, double*, int64_t);

void softmax(const float* x, float* y, size_t rows, size_t cols, const SoftmaxOptions& options) {
  auto xv = ArrayView<const float>::contiguous(x, {int64_t(rows), int64_t(cols)});
  auto yv = ArrayView<float>::contiguous(y, {int64_t(rows), int64_t(cols)});
  softmax<float>(xv, yv, -1, options);
}

void softmax(const double* x, double* y, size_t rows, size_t cols, const SoftmaxOptions& options) {
  auto xv = ArrayView<const double>::contiguous(x, {int64_t(rows), int64_t(cols)});
  auto yv = ArrayView<double>::contiguous(y, {int64_t(rows), int64_t(cols)});
  softmax<double>(xv, yv, -1, options);
}

// The float and double specializations that the public header declares (its primary template
// static_asserts for any other element type).
#define LOGITKIT_SPECIALIZE(T)                                                                           \
  template <>                                                                                            \
  void softmax<T>(InputView<T> x, ArrayView<T> y, int axis, const SoftmaxOptions& options) {             \
    softmax_impl<T>(x, y, axis, options, false);                                                         \
  }                                                                                                      \
  template <>                                                                                            \
  void log_softmax<T>(InputView<T> x, ArrayView<T> y, int axis, const SoftmaxOptions& options) {         \
    softmax_impl<T>(x, y, axis, options, true);                                                          \
  }                                                                                                      \
  template <>                                                                                            \
  void logsumexp<T>(InputView<T> x, ArrayView<T> out, int axis, InputView<T> b, ArrayView<T> sign) {     \
    logsumexp_impl<T>(x, out, axis, b, sign);                                                            \
  }
LOGITKIT_SPECIALIZE(float)
LOGITKIT_SPECIALIZE(double)
#undef LOGITKIT_SPECIALIZE

}  // namespace logitkit
