// The pieces of the row driver (runtime/row_driver.h) that stand alone: the argument checks, the
// row plan (an N-D problem over several operands as `rows` rows of length `n`, outer dimensions
// coalesced), size-based task splitting, and per-thread scratch.
#pragma once
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "logitkit/error.h"
#include "logitkit/view.h"
#include "runtime/thread_pool.h"

namespace logitkit {

inline constexpr int kMaxOperands = 16;

struct RowPlan {
  int64_t n = 0;     // row length (extent of the axis)
  int64_t rows = 0;  // product of the other extents
  int nops = 0;
  int64_t axis_stride[kMaxOperands] = {};
  int outer_ndim = 0;
  int64_t outer_shape[kMaxDims] = {};
  int64_t outer_stride[kMaxOperands][kMaxDims] = {};

  // Element offset of row r in operand op.
  int64_t offset(int op, int64_t r) const {
    int64_t off = 0;
    for (int d = outer_ndim - 1; d >= 0; --d) {
      int64_t extent = outer_shape[d];
      off += (r % extent) * outer_stride[op][d];
      r /= extent;
    }
    return off;
  }
  // Rows are equally spaced in every operand (one outer dimension after coalescing).
  bool uniform() const { return outer_ndim <= 1; }
  int64_t row_stride(int op) const { return outer_ndim == 1 ? outer_stride[op][0] : 0; }
  bool contiguous(int op) const { return axis_stride[op] == 1 || n == 1; }
};

// Normalizes a possibly negative axis, or throws naming `axis`.
inline int normalize_axis(int axis, int ndim) {
  if (axis < -ndim || axis >= ndim || ndim == 0)
    throw Error(Error::Kind::kInvalidArgument, "axis",
                "axis " + std::to_string(axis) + " is out of bounds for an array of dimension " +
                    std::to_string(ndim));
  return axis < 0 ? axis + ndim : axis;
}

// The shortest decimal that reads back as v (as Python's repr), for error messages.
inline std::string shortest_repr(double v) {
  char buf[32];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

// 1/temperature in T, or throws naming `temperature` (it must be finite, > 0, and have an inverse
// that T can represent). Every op with a temperature multiplies by this.
template <class T>
T inverse_temperature(double temperature) {
  if (!(temperature > 0.0) || !std::isfinite(temperature))
    throw Error(Error::Kind::kInvalidArgument, "temperature",
                "must be a finite number > 0, got " + shortest_repr(temperature));
  const T c = static_cast<T>(1.0 / temperature);
  if (!std::isfinite(c) || !(c > T(0)))
    throw Error(Error::Kind::kInvalidArgument, "temperature",
                "its inverse " + shortest_repr(1.0 / temperature) + " is outside the range of " +
                    (sizeof(T) == 4 ? "float32" : "float64") + " (temperature " + shortest_repr(temperature) + ")");
  return c;
}

// A finite double option as T, or throws naming `name` when T cannot hold it: beyond float32's
// range (a float32 op would compute with inf: 0 * inf = NaN results), or, for an option that must
// be > 0, rounded to 0. Each op checks its own sign and finiteness rules on the double first.
template <class T>
T option_in_compute_dtype(double value, const char* name, bool positive = false) {
  const T v = static_cast<T>(value);
  if (!std::isfinite(v) || (positive && value > 0.0 && !(v > T(0))))
    throw Error(Error::Kind::kInvalidArgument, name,
                shortest_repr(value) + " is outside the range of " + (sizeof(T) == 4 ? "float32" : "float64") +
                    " (the logits' compute dtype)");
  return v;
}

// softcap in T (0: off), or throws naming `softcap`: finite and >= 0, and when on, it and 2/softcap
// (the tanh argument's scale) representable in T, so a float32 op never caps at inf (0 * inf: NaN)
// nor at a cap flushed to 0.
template <class T>
T checked_softcap(double softcap) {
  if (!(softcap >= 0.0) || !std::isfinite(softcap))
    throw Error(Error::Kind::kInvalidArgument, "softcap",
                "must be a finite number > 0 (0: off), got " + shortest_repr(softcap));
  const T cap = option_in_compute_dtype<T>(softcap, "softcap", true);
  if (softcap > 0.0 && !std::isfinite(static_cast<T>(2.0 / softcap)))
    throw Error(Error::Kind::kInvalidArgument, "softcap",
                "2 / " + shortest_repr(softcap) + " is outside the range of " + (sizeof(T) == 4 ? "float32" : "float64") +
                    " (the logits' compute dtype)");
  return cap;
}

// strides[op] points at ndim element strides of operand op (all operands share `shape`).
inline RowPlan plan_rows(int ndim, const int64_t* shape, int axis, int nops,
                         const int64_t* const* strides) {
  RowPlan p;
  p.nops = nops;
  p.n = shape[axis];
  p.rows = 1;
  for (int op = 0; op < nops; ++op) p.axis_stride[op] = strides[op][axis];
  for (int d = 0; d < ndim; ++d) {
    if (d == axis) continue;
    p.rows *= shape[d];
    if (shape[d] == 1) continue;
    int k = p.outer_ndim;
    bool merge = k > 0;
    for (int op = 0; op < nops && merge; ++op)
      merge = p.outer_stride[op][k - 1] == strides[op][d] * shape[d];
    if (merge) {
      p.outer_shape[k - 1] *= shape[d];
      for (int op = 0; op < nops; ++op) p.outer_stride[op][k - 1] = strides[op][d];
    } else {
      p.outer_shape[k] = shape[d];
      for (int op = 0; op < nops; ++op) p.outer_stride[op][k] = strides[op][d];
      ++p.outer_ndim;
    }
  }
  return p;
}

// Elements per task: large enough to amortize a task, small enough to balance two cores.
inline constexpr int64_t kTaskElements = int64_t{1} << 15;

// Runs fn(r0, r1) over [0, rows) in tasks whose size depends on the row length only.
template <class F>
void parallel_rows(int64_t rows, int64_t n, F&& fn) {
  const int64_t per_task = std::max<int64_t>(1, kTaskElements / std::max<int64_t>(n, 1));
  const int64_t tasks = (rows + per_task - 1) / per_task;
  parallel_for(static_cast<size_t>(tasks), [&](size_t t) {
    const int64_t r0 = static_cast<int64_t>(t) * per_task;
    fn(r0, std::min(rows, r0 + per_task));
  });
}

// Per-thread scratch buffers, grown on demand and reused across calls: softmax's long rows (the
// chunk partials). Separate from the row driver's own scratch, which a long row may run inside.
template <class T>
T* thread_scratch(size_t count, int slot) {
  thread_local std::vector<T> buffers[kMaxOperands];
  auto& b = buffers[slot];
  if (b.size() < count) b.resize(count);
  return b.data();
}

// Rows processed together on the strided path: consecutive rows are usually adjacent in memory
// (e.g. softmax over axis 0), so a tile turns each strided step into a short contiguous read.
inline constexpr int64_t kGatherTile = 16;

inline int64_t gather_tile(int64_t n) {
  return std::max<int64_t>(1, std::min<int64_t>(kGatherTile, (int64_t{1} << 20) / std::max<int64_t>(n, 1)));
}

// Checks that `view` has exactly `shape`, naming `argument` otherwise.
template <class V>
void check_same_shape(const V& view, int ndim, const int64_t* shape, const char* argument,
                      const char* reference) {
  bool same = view.ndim == ndim;
  for (int d = 0; same && d < ndim; ++d) same = view.shape[d] == shape[d];
  if (!same) {
    auto show = [](int nd, const int64_t* s) {
      std::string out = "(";
      for (int d = 0; d < nd; ++d) out += std::to_string(s[d]) + (d + 1 < nd || nd == 1 ? "," : "");
      return out + ")";
    };
    throw Error(Error::Kind::kInvalidArgument, argument,
                std::string("shape ") + show(view.ndim, view.shape) + " does not match " +
                    reference + " shape " + show(ndim, shape));
  }
}

// Validates a view: ndim, extents, an element count and element offsets that fit int64, data for
// a non-empty array; and for outputs (views of non-const T) no stride 0 along an extent above 1,
// where distinct results would be written to one element.
template <class V>
void check_view(const V& view, const char* argument) {
  if (view.ndim < 0 || view.ndim > kMaxDims)
    throw Error(Error::Kind::kInvalidArgument, argument,
                "ndim must be in [0, " + std::to_string(kMaxDims) + "], got " + std::to_string(view.ndim));
  for (int d = 0; d < view.ndim; ++d)
    if (view.shape[d] < 0)
      throw Error(Error::Kind::kInvalidArgument, argument,
                  "negative extent " + std::to_string(view.shape[d]) + " in dimension " + std::to_string(d));
  const int64_t size = view.size();
  if (size < 0) throw Error(Error::Kind::kInvalidArgument, argument, "the element count overflows int64");
  if (size == 0) return;
  if (view.data == nullptr)
    throw Error(Error::Kind::kInvalidArgument, argument, "null data pointer for a non-empty array");
  int64_t span = 0;
  for (int d = 0; d < view.ndim; ++d) {
    const int64_t stride = view.strides[d];
    int64_t reach;
    if (stride == INT64_MIN || __builtin_mul_overflow(view.shape[d] - 1, stride < 0 ? -stride : stride, &reach) ||
        __builtin_add_overflow(span, reach, &span))
      throw Error(Error::Kind::kInvalidArgument, argument, "element offsets overflow int64");
  }
  using Element = std::remove_pointer_t<decltype(view.data)>;
  if constexpr (!std::is_const_v<Element>) {
    for (int d = 0; d < view.ndim; ++d)
      if (view.strides[d] == 0 && view.shape[d] > 1)
        throw Error(Error::Kind::kInvalidArgument, argument,
                    "stride 0 in dimension " + std::to_string(d) + " of extent " + std::to_string(view.shape[d]) +
                        ": an output cannot broadcast");
    // Rows that overlap each other (an as_strided view) would also write two results to one
    // element. Sufficient test: with the dimensions ordered by |stride|, each stride clears the
    // whole span of the dimensions inside it. Every layout NumPy, torch or a C++ caller makes by
    // slicing, transposing or reversing passes; only hand-made interleavings are refused.
    int order[kMaxDims];
    int n = 0;
    for (int d = 0; d < view.ndim; ++d)
      if (view.shape[d] > 1) order[n++] = d;
    std::sort(order, order + n, [&](int a, int b) {
      return std::abs(view.strides[a]) < std::abs(view.strides[b]);
    });
    int64_t inner_span = 1;  // elements covered by the dimensions already visited
    for (int i = 0; i < n; ++i) {
      const int64_t stride = std::abs(view.strides[order[i]]);
      if (stride < inner_span)
        throw Error(Error::Kind::kInvalidArgument, argument,
                    "dimension " + std::to_string(order[i]) + " (stride " + std::to_string(view.strides[order[i]]) +
                        ") overlaps the dimensions inside it: an output needs a distinct element per result");
      inner_span = stride * (view.shape[order[i]] - 1) + inner_span;
    }
  }
}

}  // namespace logitkit
