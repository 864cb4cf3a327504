// The one row driver of every "along one axis" family. A family declares its operands by role
// (input or output; a whole row, one value per row, or k values per row; any element type), and
// the driver owns everything around the kernel: the argument checks, the copies of inputs that
// partly overlap an output (the only place where overlap is handled), the layout split (batches of
// contiguous equally spaced rows, single contiguous rows, or tiles of strided rows gathered into
// per-thread scratch and scattered back), the size-based threading, and a deterministic reduction
// across rows. Every kernel sees the same contract: a RowBatch.
//
//   RowDriver d(axis);
//   const int kX = d.input(x, "x"), kY = d.output(y, "y");   // the first operand sets the shape
//   d.check();                                                // shapes and axis; throws naming the argument
//   ... the family's own argument checks (temperature, ...) ...
//   d.run([&](const RowBatch& b) { kernel(b.data<const T>(kX), b.data<T>(kY), b.rows, b.n, b.ld[kX], b.ld[kY]); });
//
// Families with measured special plans (softmax's long rows, pipelined tasks, streamed outputs)
// ask the driver about the layout after prepare() and pass a RowPolicy.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "logitkit/error.h"
#include "logitkit/runtime.h"
#include "logitkit/view.h"
#include "runtime/rows.h"
#include "runtime/thread_pool.h"
#include "simd/block_sum.h"

namespace logitkit {

// How many elements of an operand one row owns.
enum class RowExtent : uint8_t {
  kRow,     // the row itself: the reference operand's shape
  kScalar,  // one value per row: the reference shape without the axis (or with it kept as 1)
  kK,       // k values per row: the reference shape with the axis's extent replaced by k
};

// How a kernel reads an input's rows when they are not contiguous.
enum class RowRead : uint8_t {
  kGather,        // rows gathered into scratch tiles with every other operand (the default)
  kGatherPerRow,  // only this operand's row gathered, one row per call, the others in place (masks)
  kStrided,       // never gathered: the kernel reads element i of row t at row(op, t)[i * step[op]]
                  // (for kernels that read a few elements of a row, such as nll_loss's target entry)
};

// One call of a family's kernel: `rows` rows of length n. For operand op, row t starts at
// data<U>(op) + t * ld[op] (elements) and is contiguous: n elements (kRow), 1 (kScalar) or k (kK).
struct RowBatch {
  size_t rows = 0;
  size_t n = 0;
  int64_t first_row = 0;  // index of the first row in the problem's row order
  bool gathered = false;  // rows live in per-thread scratch (outputs there are then scattered)
  void* scratch = nullptr;  // RowPolicy::scratch_bytes of per-thread scratch
  void* ptr[kMaxOperands] = {};
  ptrdiff_t ld[kMaxOperands] = {};
  ptrdiff_t step[kMaxOperands] = {};  // element stride within a row: 1 except for RowRead::kStrided
  template <class U>
  U* data(int op) const {
    return static_cast<U*>(ptr[op]);
  }
  // Row t of the batch, for kernels written one row at a time.
  template <class U>
  U* row(int op, size_t t) const {
    return data<U>(op) + static_cast<ptrdiff_t>(t) * ld[op];
  }
};

// A family's plan where the default one (size-based tasks over whole rows) is not the measured best.
struct RowPolicy {
  enum class Split {
    kBySize,     // parallel_rows: tasks of about kTaskElements, whatever the thread count
    kPipelined,  // parallel_pipelined_rows: for kernels that save work on every row after a task's first
  };
  Split split = Split::kBySize;
  size_t scratch_bytes = 0;  // per-thread scratch every batch gets (RowBatch::scratch)
  int64_t work_per_row = 0;  // elements of work per row for the task sizes; 0: the row length
};

// Most elements per task of the pipelined kernels (softmax_kernels-inl.h).
inline constexpr int64_t kPipelineTaskElements = int64_t{1} << 17;

// fn(r0, r1) over tasks of consecutive rows for kernels that save work for every row after the
// first of a task: tasks of several rows, at most kPipelineTaskElements (so a task's rows stay in
// L2), and no more rows than keep every thread busy: a 4-row batch on 2 threads runs as 2 tasks of
// 2 rows (twice as fast as 1 task of 4). The thread count may decide this split only because such
// kernels give every row the bits it gets alone (tests: rows alone equal rows in a batch, thread
// invariance); a kernel without that property must use Split::kBySize.
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

// Sum of v[0..count) in a fixed order whatever the thread count: fixed blocks of 4096 rows, each
// summed in 8 interleaved lanes (element i to lane i % 8) with TwoSum compensation, the lanes and
// then the block sums added in order. For losses' "sum"/"mean" reductions. The lanes are
// independent chains (one compensated add per element as one chain took 4 cycles per element,
// a third of an nll_loss call); they are combined exactly as the values arrive, so the result is
// the exact sum rounded about once, like BlockSum's.
inline double ordered_block_sum(const double* v, int64_t count) {
  constexpr int kLanes = 8;
  double s[kLanes] = {}, err[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {  // BlockSum<double>::add, lane by lane
      const double t = s[k] + v[i + k];
      const double vv = t - s[k];
      err[k] += (s[k] - (t - vv)) + (v[i + k] - vv);
      s[k] = t;
    }
  BlockSum<double> total;
  for (; i < count; ++i) total.add(v[i]);
  for (int k = 0; k < kLanes; ++k) {
    total.add(s[k]);
    total.add(err[k]);
  }
  return total.value();
}

inline double ordered_sum(const double* v, int64_t count) {
  constexpr int64_t kBlock = int64_t{1} << 12;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  if (blocks <= 1) return ordered_block_sum(v, count);
  std::vector<double> part(static_cast<size_t>(blocks));
  parallel_for(static_cast<size_t>(blocks), [&](size_t b) {
    const int64_t begin = int64_t(b) * kBlock;
    part[b] = ordered_block_sum(v + begin, std::min(count, begin + kBlock) - begin);
  });
  BlockSum<double> total;
  for (double p : part) total.add(p);
  return total.value();
}

class RowDriver {
 public:
  explicit RowDriver(int axis) : axis_(axis) {}
  ~RowDriver() {
    for (std::vector<double>* v : values_)
      if (v) RowValues::release(v);
  }
  RowDriver(const RowDriver&) = delete;
  RowDriver& operator=(const RowDriver&) = delete;

  // Declares an operand, validating its view at once (so arguments are checked in declaration
  // order) and returning its index for RowBatch. The first operand is the reference: it sets the
  // shape every kRow operand must have. k: the per-row count of a kK operand.
  template <class T>
  int input(const ArrayView<const T>& v, const char* name, RowExtent extent = RowExtent::kRow, int64_t k = 0,
            RowRead read = RowRead::kGather) {
    check_view(v, name);
    return add(v.data, sizeof(T), v.ndim, v.shape, v.strides, name, false, extent, k, read);
  }
  template <class T>
  int output(const ArrayView<T>& v, const char* name, RowExtent extent = RowExtent::kRow, int64_t k = 0) {
    check_view(v, name);
    return add(v.data, sizeof(T), v.ndim, v.shape, v.strides, name, true, extent, k, RowRead::kGather);
  }
  // A driver-owned double per row (a kScalar output, contiguous), summed across rows in a fixed
  // order by row_value_sum(op) after run(): the cross-row reductions of "sum"/"mean" losses.
  int row_values() {
    const int op =
        add(nullptr, sizeof(double), 0, nullptr, nullptr, "row values", true, RowExtent::kScalar, 0, RowRead::kGather);
    ops_[op].driver_owned = true;
    return op;
  }

  // Shapes against the reference and the axis; throws naming the argument. Returns the axis.
  int check() {
    if (checked_) return axis_;
    const Operand& ref = ops_[0];
    for (int op = 1; op < nops_; ++op)
      if (ops_[op].extent == RowExtent::kRow) check_same_shape(ops_[op], ref.ndim, ref.shape, ops_[op].name, ref.name);
    axis_ = normalize_axis(axis_, ref.ndim);
    n_ = ref.shape[axis_];
    rows_ = 1;
    for (int d = 0; d < ref.ndim; ++d)
      if (d != axis_) rows_ *= ref.shape[d];
    for (int op = 0; op < nops_; ++op) expand(ops_[op]);
    checked_ = true;
    return axis_;
  }

  int axis() { return check(); }
  int64_t n() { return check(), n_; }
  int64_t rows() { return check(), rows_; }

  // Overlap copies and the row plan; run() calls it when the family did not.
  void prepare() {
    check();
    if (prepared_) return;
    prepared_ = true;
    for (int op = 0; op < nops_; ++op) {
      if (!ops_[op].driver_owned) continue;
      values_[op] = RowValues::acquire(static_cast<size_t>(rows_));  // the kernel writes every row
      Operand& o = ops_[op];
      o.data = reinterpret_cast<char*>(values_[op]->data());
      for (int d = 0; d < ops_[0].ndim; ++d) o.shape[d] = ops_[0].shape[d];
      int64_t stride = 1;  // C order over the other dimensions
      for (int d = ops_[0].ndim - 1; d >= 0; --d) {
        o.strides[d] = o.plan_strides[d] = d == axis_ ? 0 : stride;
        if (d != axis_) stride *= ops_[0].shape[d];
      }
      o.ndim = ops_[0].ndim;
      o.row_step = 0;
    }
    // An input that shares memory with an output other than element for element (the exact
    // alias of in-place calls, which every kernel supports) is read from a contiguous copy, as
    // NumPy's ufuncs do, since rows written early would feed rows read later.
    for (int i = 0; i < nops_; ++i) {
      if (ops_[i].output) continue;
      for (int o = 0; o < nops_; ++o)
        if (ops_[o].output && !ops_[o].driver_owned && overlaps_partly(ops_[i].user, ops_[o].user)) {
          copy_input(i);
          break;
        }
    }
    const int64_t* strides[kMaxOperands];
    for (int op = 0; op < nops_; ++op) strides[op] = ops_[op].plan_strides;
    plan_ = plan_rows(ops_[0].ndim, ops_[0].shape, axis_, nops_, strides);
    all_contiguous_ = n_ > 0;
    per_row_ok_ = true;
    for (int op = 0; op < nops_; ++op) {
      const bool c = contiguous(op);
      all_contiguous_ = all_contiguous_ && c;
      per_row_ok_ = per_row_ok_ && (c || ops_[op].read == RowRead::kGatherPerRow);
    }
    per_row_ok_ = per_row_ok_ || n_ == 0;
  }

  // After prepare(): whether every operand's rows are contiguous (no gather, no scatter), and
  // whether, in addition, rows are equally spaced (batches of several rows per kernel call).
  bool rows_contiguous() { return prepare(), all_contiguous_; }
  bool rows_uniform() { return prepare(), all_contiguous_ && plan_.uniform(); }
  const RowPlan& plan() { return prepare(), plan_; }

  // fn(const RowBatch&) over every row.
  template <class F>
  void run(F&& fn, const RowPolicy& policy = {}) {
    prepare();
    if (rows_ == 0) return;
    if (all_contiguous_ && plan_.uniform()) {
      auto task = [&](int64_t r0, int64_t r1) {
        RowBatch b = batch_at(r0, size_t(r1 - r0), policy);
        for (int op = 0; op < nops_; ++op) {
          b.ptr[op] = ops_[op].data + r0 * plan_.row_stride(op) * ops_[op].item;
          b.ld[op] = plan_.row_stride(op);
          b.step[op] = in_place_step(op);
        }
        fn(b);
      };
      if (policy.split == RowPolicy::Split::kPipelined) {
        parallel_pipelined_rows(rows_, n_, task);
      } else {
        parallel_rows(rows_, work_per_row(policy), task);
      }
      return;
    }
    if (per_row_ok_) {  // one row per call; operands read kGatherPerRow go through scratch
      parallel_rows(rows_, work_per_row(policy), [&](int64_t r0, int64_t r1) {
        RowBatch b = batch_at(r0, 1, policy);
        for (int64_t r = r0; r < r1; ++r) {
          b.first_row = r;
          for (int op = 0; op < nops_; ++op) {
            const Operand& o = ops_[op];
            const int64_t off = length(op) == 0 ? 0 : plan_.offset(op, r);  // data may be null
            if (contiguous(op) || n_ == 0) {
              b.ptr[op] = o.data + off * o.item;
              b.step[op] = in_place_step(op);
            } else {
              char* buf = driver_scratch(static_cast<size_t>(length(op)) * o.item, op);
              const int64_t offs[1] = {off};
              gather(o, offs, 1, buf);
              b.ptr[op] = buf;
              b.step[op] = 1;
            }
          }
          fn(b);
        }
      });
      return;
    }
    // Strided rows: a tile of rows per step (consecutive rows are usually adjacent in memory, e.g.
    // softmax over axis 0, so each strided step reads a short contiguous run), inputs gathered into
    // per-thread scratch, outputs computed into scratch and scattered back. A row output is
    // computed over the tile of a row input of its element size (every kernel takes an output
    // that is exactly one of its inputs): measured 7% faster on softmax of 1024x1000 over axis 0
    // than a tile of its own, although in place the softmax kernels take their checked exp.
    int tile_of[kMaxOperands];
    bool taken[kMaxOperands] = {};
    for (int op = 0; op < nops_; ++op) {
      tile_of[op] = op;
      if (!ops_[op].output || ops_[op].extent != RowExtent::kRow) continue;
      for (int i = 0; i < nops_; ++i)
        if (!ops_[i].output && !taken[i] && ops_[i].extent == RowExtent::kRow && ops_[i].item == ops_[op].item) {
          tile_of[op] = i;
          taken[i] = true;
          break;
        }
    }
    const int64_t tile = gather_tile(n_);
    parallel_rows(rows_, work_per_row(policy), [&](int64_t r0, int64_t r1) {
      RowBatch b = batch_at(r0, 0, policy);
      b.gathered = true;
      for (int op = 0; op < nops_; ++op) {
        b.ptr[op] = driver_scratch(static_cast<size_t>(tile * length(op)) * ops_[op].item, op);
        b.ld[op] = length(op);
      }
      for (int op = 0; op < nops_; ++op) b.ptr[op] = b.ptr[tile_of[op]];
      int64_t offs[kGatherTile];
      for (int64_t r = r0; r < r1; r += tile) {
        const int64_t count = std::min(tile, r1 - r);
        b.first_row = r;
        b.rows = size_t(count);
        for (int op = 0; op < nops_; ++op) {
          if (ops_[op].output) continue;
          for (int64_t t = 0; t < count; ++t) offs[t] = plan_.offset(op, r + t);
          gather(ops_[op], offs, count, static_cast<char*>(b.ptr[op]));
        }
        fn(b);
        for (int op = 0; op < nops_; ++op) {
          if (!ops_[op].output) continue;
          for (int64_t t = 0; t < count; ++t) offs[t] = plan_.offset(op, r + t);
          scatter(static_cast<const char*>(b.ptr[op]), offs, count, ops_[op]);
        }
      }
    });
  }

  // fn(const RowBatch&) over every row, one at a time on the calling thread: for kernels that
  // split one long contiguous row across threads themselves. Only when rows_contiguous().
  template <class F>
  void run_serial(F&& fn) {
    prepare();
    RowBatch b = batch_at(0, 1, RowPolicy{});
    for (int64_t r = 0; r < rows_; ++r) {
      b.first_row = r;
      for (int op = 0; op < nops_; ++op) {
        b.ptr[op] = ops_[op].data + plan_.offset(op, r) * ops_[op].item;
        b.step[op] = in_place_step(op);
      }
      fn(b);
    }
  }

  // The row_values() operand `op` summed in a fixed order (after run()).
  double row_value_sum(int op) const {
    return ordered_sum(values_[op]->data(), rows_);
  }

 private:
  struct Operand {
    const char* name = "";
    bool output = false;
    RowRead read = RowRead::kGather;
    bool driver_owned = false;  // row_values(): storage in copies_
    RowExtent extent = RowExtent::kRow;
    int64_t k = 0;
    int item = 0;
    char* data = nullptr;
    int ndim = 0;
    int64_t shape[kMaxDims] = {};
    int64_t strides[kMaxDims] = {};       // the caller's, in elements
    int64_t plan_strides[kMaxDims] = {};  // over the reference shape (stride 0 along a missing axis)
    int64_t row_step = 1;                 // stride between a row's elements (kRow, kK)
    struct UserView {                     // the caller's view, for overlap tests
      const char* data;
      int item, ndim;
      const int64_t* shape;
      const int64_t* strides;
      int64_t size() const {
        int64_t s = 1;
        for (int d = 0; d < ndim; ++d) s *= shape[d];
        return s;
      }
    } user{};
  };

  int add(const void* data, size_t item, int ndim, const int64_t* shape, const int64_t* strides, const char* name,
          bool output, RowExtent extent, int64_t k, RowRead read) {
    if (nops_ == kMaxOperands) throw Error(Error::Kind::kInvalidArgument, name, "too many operands for one op");
    Operand& o = ops_[nops_];
    o.name = name;
    o.output = output;
    o.read = read;
    o.extent = extent;
    o.k = k;
    o.item = static_cast<int>(item);
    o.data = const_cast<char*>(static_cast<const char*>(data));
    o.ndim = ndim;
    for (int d = 0; d < ndim; ++d) {
      o.shape[d] = shape[d];
      o.strides[d] = strides[d];
      o.plan_strides[d] = strides[d];
    }
    o.user = {o.data, o.item, o.ndim, o.shape, o.strides};
    return nops_++;
  }

  // A kScalar or kK operand seen with the reference's rank, for plan_rows.
  void expand(Operand& o) {
    const Operand& ref = ops_[0];
    if (o.extent == RowExtent::kRow) {
      for (int d = 0; d < o.ndim; ++d) o.plan_strides[d] = o.strides[d];
      o.row_step = o.strides[axis_];
      return;
    }
    if (o.driver_owned) return;  // laid out in prepare()
    int64_t full[kMaxDims] = {};
    bool ok;
    if (o.extent == RowExtent::kScalar) {
      ok = o.ndim == ref.ndim - 1 || o.ndim == ref.ndim;
      for (int d = 0, s = 0; ok && d < ref.ndim; ++d) {
        if (o.ndim == ref.ndim - 1 && d == axis_) continue;
        const int src = o.ndim == ref.ndim ? d : s++;
        ok = d == axis_ ? o.shape[src] == 1 : o.shape[src] == ref.shape[d];
        full[d] = o.strides[src];
      }
      if (!ok)
        throw Error(Error::Kind::kInvalidArgument, o.name,
                    std::string("shape must be ") + ref.name +
                        "'s shape without the reduced axis (or with it kept as 1)");
      o.row_step = 0;
    } else {
      ok = o.ndim == ref.ndim && o.k >= 0;
      for (int d = 0; ok && d < ref.ndim; ++d) {
        ok = o.shape[d] == (d == axis_ ? o.k : ref.shape[d]);
        full[d] = o.strides[d];
      }
      if (!ok)
        throw Error(Error::Kind::kInvalidArgument, o.name,
                    std::string("shape must be ") + ref.name + "'s shape with the axis of extent " +
                        std::to_string(o.k));
      o.row_step = o.strides[axis_];
    }
    full[axis_] = 0;
    for (int d = 0; d < ref.ndim; ++d) o.plan_strides[d] = full[d];
  }

  int64_t length(int op) const {
    switch (ops_[op].extent) {
      case RowExtent::kRow:
        return n_;
      case RowExtent::kScalar:
        return 1;
      case RowExtent::kK:
        return ops_[op].k;
    }
    return 0;
  }
  bool contiguous(int op) const {
    return length(op) <= 1 || ops_[op].row_step == 1 || ops_[op].read == RowRead::kStrided;
  }
  // Element stride of op's rows as the kernel sees them in place.
  ptrdiff_t in_place_step(int op) const { return ops_[op].read == RowRead::kStrided ? ops_[op].row_step : 1; }

  int64_t work_per_row(const RowPolicy& policy) const { return policy.work_per_row ? policy.work_per_row : n_; }

  RowBatch batch_at(int64_t r0, size_t rows, const RowPolicy& policy) const {
    RowBatch b;
    for (int op = 0; op < nops_; ++op) b.step[op] = 1;
    b.rows = rows;
    b.n = static_cast<size_t>(n_);
    b.first_row = r0;
    if (policy.scratch_bytes) b.scratch = driver_scratch(policy.scratch_bytes, kMaxOperands);
    return b;
  }

  // Per-thread scratch (slot: an operand's tiles, or kMaxOperands for the kernel's own), grown on
  // demand and reused across calls.
  static char* driver_scratch(size_t bytes, int slot) {
    thread_local std::vector<uint64_t> buffers[kMaxOperands + 1];
    auto& b = buffers[slot];
    const size_t words = (bytes + sizeof(uint64_t) - 1) / sizeof(uint64_t);
    if (b.size() < words) b.resize(words);
    return reinterpret_cast<char*>(b.data());
  }

  // Tile copies between an operand's strided rows and contiguous scratch rows: element j of tile
  // row t is at base[j * s + t * d] (the rows of a tile are equally spaced in almost every call,
  // d = 1 for a reduction over axis 0) or else at base[offs[t] + j * s]. The full equally spaced
  // tile (count == kGatherTile) runs with its row loop unrolled: measured 2-4x faster than a loop
  // over offsets read from memory, on 1000-element rows.
  // along_rows: row by row (each a sweep with the element step), else element by element across
  // the rows; the faster is the one whose inner loop walks the nearer neighbours in the caller's
  // memory (see user_order).
  template <class W, int kCount>
  static void copy_rows(W* dst, int64_t dst_row, int64_t dst_step, const W* src, int64_t src_row, int64_t src_step,
                        int count, int64_t len, bool along_rows) {
    const int rows = kCount ? kCount : count;
    if (along_rows) {
      for (int t = 0; t < rows; ++t)
        for (int64_t j = 0; j < len; ++j) dst[t * dst_row + j * dst_step] = src[t * src_row + j * src_step];
      return;
    }
    for (int64_t j = 0; j < len; ++j)
      for (int t = 0; t < rows; ++t) dst[t * dst_row + j * dst_step] = src[t * src_row + j * src_step];
  }
  // Whether to copy a tile of the caller's rows (d apart, elements s apart) row by row: when the
  // elements are nearer than the rows (a strided slice: 10% faster than across the rows); across
  // the rows when they are nearer (axis 0 of a C array: each step reads one contiguous run).
  static bool user_order(int64_t d, int64_t s) { return std::abs(s) < std::abs(d); }
  // Whether offs[0..count) is offs[0] + t * d; sets d.
  static bool equally_spaced(const int64_t* offs, int64_t count, int64_t& d) {
    d = count > 1 ? offs[1] - offs[0] : 0;
    for (int64_t t = 2; t < count; ++t)
      if (offs[t] - offs[t - 1] != d) return false;
    return true;
  }
  template <class W>
  void gather_as(const Operand& o, const int64_t* offs, int64_t count, char* dst_bytes) const {
    const W* src = reinterpret_cast<const W*>(o.data);
    W* dst = reinterpret_cast<W*>(dst_bytes);
    const int64_t len = length(&o - ops_), s = o.row_step;
    int64_t d;
    if (equally_spaced(offs, count, d)) {
      const bool along = user_order(d, s);
      if (count == kGatherTile)
        return copy_rows<W, kGatherTile>(dst, len, 1, src + offs[0], d, s, int(count), len, along);
      return copy_rows<W, 0>(dst, len, 1, src + offs[0], d, s, int(count), len, along);
    }
    for (int64_t t = 0; t < count; ++t) copy_rows<W, 1>(dst + t * len, 0, 1, src + offs[t], 0, s, 1, len, true);
  }
  template <class W>
  void scatter_as(const char* src_bytes, const int64_t* offs, int64_t count, const Operand& o) const {
    const W* src = reinterpret_cast<const W*>(src_bytes);
    W* dst = reinterpret_cast<W*>(o.data);
    const int64_t len = length(&o - ops_), s = o.row_step;
    int64_t d;
    if (equally_spaced(offs, count, d)) {
      const bool along = user_order(d, s);
      if (count == kGatherTile)
        return copy_rows<W, kGatherTile>(dst + offs[0], d, s, src, len, 1, int(count), len, along);
      return copy_rows<W, 0>(dst + offs[0], d, s, src, len, 1, int(count), len, along);
    }
    for (int64_t t = 0; t < count; ++t) copy_rows<W, 1>(dst + offs[t], 0, s, src + t * len, 0, 1, 1, len, true);
  }

  void gather(const Operand& o, const int64_t* offs, int64_t count, char* dst) const {
    switch (o.item) {
      case 1: return gather_as<uint8_t>(o, offs, count, dst);
      case 2: return gather_as<uint16_t>(o, offs, count, dst);
      case 4: return gather_as<uint32_t>(o, offs, count, dst);
      default: return gather_as<uint64_t>(o, offs, count, dst);
    }
  }
  void scatter(const char* src, const int64_t* offs, int64_t count, const Operand& o) const {
    switch (o.item) {
      case 1: return scatter_as<uint8_t>(src, offs, count, o);
      case 2: return scatter_as<uint16_t>(src, offs, count, o);
      case 4: return scatter_as<uint32_t>(src, offs, count, o);
      default: return scatter_as<uint64_t>(src, offs, count, o);
    }
  }

  // Replaces input i by a C-contiguous copy of its elements.
  void copy_input(int i) {
    Operand& o = ops_[i];
    const int64_t size = o.user.size();
    std::vector<uint64_t>& store = copies_[i];
    store.resize(static_cast<size_t>((size * o.item + 7) / 8));
    char* dst = reinterpret_cast<char*>(store.data());
    int64_t index[kMaxDims] = {};
    const char* src = o.data;
    for (int64_t e = 0; e < size; ++e, dst += o.item) {
      std::memcpy(dst, src, static_cast<size_t>(o.item));
      for (int d = o.ndim - 1; d >= 0; --d) {  // odometer step over the multi-index
        src += o.strides[d] * o.item;
        if (++index[d] < o.shape[d]) break;
        src -= o.strides[d] * o.shape[d] * o.item;
        index[d] = 0;
      }
    }
    o.data = reinterpret_cast<char*>(store.data());
    int64_t stride = 1;
    for (int d = o.ndim - 1; d >= 0; --d) {
      o.strides[d] = stride;
      stride *= o.shape[d];
    }
    expand(o);  // re-derive the plan strides from the copy's
  }

  static bool overlaps_partly(const Operand::UserView& in, const Operand::UserView& out) {
    if (in.size() == 0 || out.size() == 0) return false;
    auto extent = [](const Operand::UserView& v) {
      auto lo = reinterpret_cast<uintptr_t>(v.data), hi = lo;
      for (int d = 0; d < v.ndim; ++d) {
        const int64_t span = (v.shape[d] - 1) * v.strides[d] * v.item;
        (span < 0 ? lo : hi) += static_cast<uintptr_t>(span);
      }
      return std::pair<uintptr_t, uintptr_t>(lo, hi + static_cast<uintptr_t>(v.item));
    };
    const auto a = extent(in), b = extent(out);
    if (a.second <= b.first || b.second <= a.first) return false;
    bool same = in.data == out.data && in.ndim == out.ndim && in.item == out.item;
    for (int d = 0; same && d < in.ndim; ++d)
      same = in.shape[d] == out.shape[d] && (in.shape[d] == 1 || in.strides[d] == out.strides[d]);
    return !same;
  }

  static void check_same_shape(const Operand& o, int ndim, const int64_t* shape, const char* argument,
                               const char* reference) {
    struct Shape {
      int ndim;
      const int64_t* shape;
    } view{o.ndim, o.shape};
    logitkit::check_same_shape(view, ndim, shape, argument, reference);
  }

  int axis_;
  int nops_ = 0;
  Operand ops_[kMaxOperands];
  std::vector<uint64_t> copies_[kMaxOperands];  // inputs' overlap copies
  // row_values() storage: buffers of the calling thread reused across calls (fresh pages cost a
  // page fault per 4 KiB, more than a loss's pass over a short row), returned by the destructor.
  class RowValues {
   public:
    static std::vector<double>* acquire(size_t count) {
      auto& free = pool();
      std::vector<double>* v;
      if (free.empty()) {
        v = new std::vector<double>();
      } else {
        v = free.back().release();
        free.pop_back();
      }
      if (v->size() < count) v->resize(count);
      return v;
    }
    static void release(std::vector<double>* v) { pool().emplace_back(v); }

   private:
    static std::vector<std::unique_ptr<std::vector<double>>>& pool() {
      thread_local std::vector<std::unique_ptr<std::vector<double>>> free;
      return free;
    }
  };
  std::vector<double>* values_[kMaxOperands] = {};
  bool checked_ = false, prepared_ = false;
  bool all_contiguous_ = false, per_row_ok_ = false;
  int64_t n_ = 0, rows_ = 0;
  RowPlan plan_;
};

}  // namespace logitkit
