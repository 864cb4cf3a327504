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
// Most elements per task of the pipelined kernels (rows of at least kPipelineMinRowBytes).
constexpr int64_t kPipelineTaskElements = int64_t{1} << 17;

// Whether rows of n elements of `item` bytes take the pipelined kernels (softmax_kernels-inl.h),
// which fuse each row's exp pass with the neighbouring rows' cheap passes.
bool pipelined(int64_t n, size_t item) { return static_cast<size_t>(n) * item >= kPipelineMinRowBytes; }

// fn(r0, r1) over tasks of consecutive rows for the pipelined kernels, which save work for every
// row after the first of a task: tasks of several rows, at most kPipelineTaskElements (so a
// task's rows stay in L2), and no more rows than keep every thread busy: a 4-row batch on 2
// threads runs as 2 tasks of 2 rows (twice as fast as 1 task of 4). The thread count may decide
// this split because the split never changes a value: the pipelined kernels give every row the
// bits it gets alone (tests: rows alone equal rows in a batch, thread invariance).
template <class F>
void parallel_pipelined_rows(int64_t rows, int64_t n, F&& fn) {
  const int64_t threads = get_num_threads();
  const int64_t per_task =
      std::clamp<int64_t>((rows + threads - 1) / threads, 1, std::max<int64_t>(1, kPipelineTaskElements / n));
  parallel_for(static_cast<size_t>((rows + per_task - 1) / per_task), [&](size_t t) {
    const int64_t r0 = int64_t(t) * per_task;
    fn(r0, std::min(rows, r0 + per_task));
  });
}

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
  const bool unshifted =
      magnitude * c <= kUnshiftedExpLimit<T> && static_cast<uint64_t>(n) <= kUnshiftedExpMaxElements;
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
  check_view(x, "x");
  check_view(y, "y");
  check_same_shape(y, x.ndim, x.shape, "y", "x");
  axis = normalize_axis(axis, x.ndim);
  const T c = inverse_temperature<T>(options.temperature);
  const SoftmaxAlgorithm algorithm = resolve_algorithm<T>(options.algorithm, x.shape[axis]);
  if (x.size() == 0) return;
  std::vector<T> x_copy;  // an x that partly overlaps y is read from a copy
  x = apart_from(x, y, x_copy);
  const SoftmaxKernels<T>& k = kernels().softmax.get<T>();
  const int64_t* strides[2] = {x.strides, y.strides};
  const RowPlan p = plan_rows(x.ndim, x.shape, axis, 2, strides);
  const size_t n = static_cast<size_t>(p.n);

  auto rows_kernel = [&](const T* xr, T* yr, size_t rows, ptrdiff_t ldx, ptrdiff_t ldy) {
    if (log) {
      k.log_softmax_rows(xr, yr, rows, n, ldx, ldy, c);
    } else {
      k.softmax_rows(xr, yr, rows, n, ldx, ldy, c, algorithm);
    }
  };
  if (p.contiguous(0) && p.contiguous(1)) {
    if (p.n >= kLongRow) {
      for (int64_t r = 0; r < p.rows; ++r) {
        const T* xr = x.data + p.offset(0, r);
        T* yr = y.data + p.offset(1, r);
        if (log) {
          log_softmax_long_row(k, xr, yr, p.n, c);
        } else {
          softmax_long_row(k, xr, yr, p.n, c, algorithm);
        }
      }
      return;
    }
    auto rows_task = [&](int64_t r0, int64_t r1) {
      if (p.uniform()) {
        rows_kernel(x.data + r0 * p.row_stride(0), y.data + r0 * p.row_stride(1), size_t(r1 - r0),
                    p.row_stride(0), p.row_stride(1));
      } else {
        for (int64_t r = r0; r < r1; ++r) rows_kernel(x.data + p.offset(0, r), y.data + p.offset(1, r), 1, 0, 0);
      }
    };
    // Outputs beyond the last-level cache: y is written with non-temporal stores (through L1 or
    // L2 scratch), so memory sees one read of x and one write of y, as a copy does.
    if ((log || algorithm == SoftmaxAlgorithm::kThreePassReload) &&
        static_cast<size_t>(p.rows) * n * sizeof(T) >= last_level_cache_bytes()) {
      const auto streamed = log ? k.log_softmax_rows_streamed : k.softmax_rows_streamed;
      parallel_rows(p.rows, p.n, [&](int64_t r0, int64_t r1) {
        T* buf = thread_scratch<T>(streamed_scratch_elements<T>(n), 0);
        if (p.uniform()) {
          streamed(x.data + r0 * p.row_stride(0), y.data + r0 * p.row_stride(1), size_t(r1 - r0), n, p.row_stride(0),
                   p.row_stride(1), c, buf);
        } else {
          for (int64_t r = r0; r < r1; ++r) streamed(x.data + p.offset(0, r), y.data + p.offset(1, r), 1, n, 0, 0, c, buf);
        }
      });
      return;
    }
    if ((log || algorithm == SoftmaxAlgorithm::kThreePassReload) && p.uniform() && pipelined(p.n, sizeof(T))) {
      parallel_pipelined_rows(p.rows, p.n, rows_task);
    } else {
      parallel_rows(p.rows, p.n, rows_task);
    }
    return;
  }
  // Strided rows: gather a tile of rows into per-thread scratch, compute in place, scatter back.
  const int64_t tile = gather_tile(p.n);
  parallel_rows(p.rows, p.n, [&](int64_t r0, int64_t r1) {
    T* buf = thread_scratch<T>(static_cast<size_t>(tile * p.n), 0);
    for (int64_t r = r0; r < r1; r += tile) {
      const int64_t count = std::min(tile, r1 - r);
      gather_rows(x.data, p, 0, r, count, buf);
      rows_kernel(buf, buf, size_t(count), p.n, p.n);
      scatter_rows(buf, p, 1, r, count, y.data);
    }
  });
}

template <class T>
void logsumexp_impl(ArrayView<const T> x, ArrayView<T> out, int axis, ArrayView<const T> b, ArrayView<T> sign) {
  check_view(x, "x");
  check_view(out, "out");
  axis = normalize_axis(axis, x.ndim);
  const ArrayView<T> out_full = expand_reduced(out, x, axis, "out");
  const bool weighted = b.data != nullptr, signed_out = sign.data != nullptr;
  if (weighted) {
    check_view(b, "b");
    check_same_shape(b, x.ndim, x.shape, "b", "x");
  }
  ArrayView<T> sign_full;
  if (signed_out) {
    check_view(sign, "sign");
    sign_full = expand_reduced(sign, x, axis, "sign");
  }
  std::vector<T> x_copy, b_copy;  // inputs that partly overlap an output are read from copies
  if (overlaps_partly(x, out) || (signed_out && overlaps_partly(x, sign))) x = contiguous_copy(x, x_copy);
  if (weighted && (overlaps_partly(b, out) || (signed_out && overlaps_partly(b, sign)))) b = contiguous_copy(b, b_copy);
  const int64_t* strides[4] = {x.strides, out_full.strides, weighted ? b.strides : x.strides,
                               signed_out ? sign_full.strides : out_full.strides};
  const RowPlan p = plan_rows(x.ndim, x.shape, axis, 4, strides);
  if (p.rows == 0) return;
  if (p.n == 0) {  // the empty sum is 0
    for (int64_t r = 0; r < p.rows; ++r) {
      out.data[p.offset(1, r)] = -std::numeric_limits<T>::infinity();
      if (signed_out) sign.data[p.offset(3, r)] = T(0);
    }
    return;
  }
  const SoftmaxKernels<T>& k = kernels().softmax.get<T>();
  auto out_at = [&](int64_t r) { return out.data + p.offset(1, r); };
  auto sign_at = [&](int64_t r) { return signed_out ? sign.data + p.offset(3, r) : nullptr; };
  if (p.contiguous(0) && (!weighted || p.contiguous(2))) {
    if (p.n >= kLongRow) {
      for (int64_t r = 0; r < p.rows; ++r)
        logsumexp_long_row(k, x.data + p.offset(0, r), weighted ? b.data + p.offset(2, r) : nullptr, p.n,
                           out_at(r), sign_at(r));
      return;
    }
    auto rows_task = [&](int64_t r0, int64_t r1) {
      if (p.uniform()) {
        k.logsumexp_rows(x.data + r0 * p.row_stride(0), weighted ? b.data + r0 * p.row_stride(2) : nullptr,
                         out_at(r0), sign_at(r0), size_t(r1 - r0), size_t(p.n), p.row_stride(0),
                         p.row_stride(2), p.row_stride(1), p.row_stride(3));
      } else {
        for (int64_t r = r0; r < r1; ++r)
          k.logsumexp_rows(x.data + p.offset(0, r), weighted ? b.data + p.offset(2, r) : nullptr, out_at(r),
                           sign_at(r), 1, size_t(p.n), 0, 0, 0, 0);
      }
    };
    if (!weighted && p.uniform() && pipelined(p.n, sizeof(T))) {
      parallel_pipelined_rows(p.rows, p.n, rows_task);
    } else {
      parallel_rows(p.rows, p.n, rows_task);
    }
    return;
  }
  const int64_t tile = gather_tile(p.n);
  parallel_rows(p.rows, p.n, [&](int64_t r0, int64_t r1) {
    T* xbuf = thread_scratch<T>(static_cast<size_t>(tile * p.n), 0);
    T* bbuf = weighted ? thread_scratch<T>(static_cast<size_t>(tile * p.n), 1) : nullptr;
    for (int64_t r = r0; r < r1; r += tile) {
      const int64_t count = std::min(tile, r1 - r);
      gather_rows(x.data, p, 0, r, count, xbuf);
      if (weighted) gather_rows(b.data, p, 2, r, count, bbuf);
      for (int64_t t = 0; t < count; ++t)
        k.logsumexp_rows(xbuf + t * p.n, weighted ? bbuf + t * p.n : nullptr, out_at(r + t), sign_at(r + t), 1,
                         size_t(p.n), 0, 0, 0, 0);
    }
  });
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
