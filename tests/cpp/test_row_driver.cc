// The row driver (cpp/src/runtime/row_driver.h) on its own: a toy family declared to it with every
// operand role (a row input, an integer label per row, a row output, a per-row output of another
// type, a (rows, k) output, the driver's per-row doubles), checked against plain loops over the
// same N-D index space for every layout path, thread count, partial overlaps and bad arguments.
#include <atomic>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "runtime/row_driver.h"  // internal
#include "test_util.h"

namespace {

using logitkit::ArrayView;
using logitkit::RowBatch;
using logitkit::RowDriver;
using logitkit::RowExtent;

using lktest::c_strides;

template <class T>
ArrayView<T> view(T* base, const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) {
  return lktest::make_view(base, shape, strides);
}

// What the driver saw: which paths ran and the largest batch.
struct Paths {
  std::atomic<int> batches{0}, gathered{0}, max_rows{0};
};

// The toy family: y = 2 x; picked = x[label] (as double; NaN for a label out of range); stats =
// (sum, max) of the row (k = 2); row value = the row's sum, summed across rows by the driver.
struct Toy {
  ArrayView<const float> x;
  ArrayView<const int64_t> label;
  ArrayView<float> y;
  ArrayView<double> picked, stats;
  int axis;
};

double run_toy(const Toy& t, Paths* paths = nullptr) {
  RowDriver d(t.axis);
  const int kX = d.input(t.x, "x");
  const int kLabel = d.input(t.label, "label", RowExtent::kScalar);
  const int kY = d.output(t.y, "y");
  const int kPicked = d.output(t.picked, "picked", RowExtent::kScalar);
  const int kStats = d.output(t.stats, "stats", RowExtent::kK, 2);
  const int kSum = d.row_values();
  d.check();
  d.run([&](const RowBatch& b) {
    if (paths) {
      ++paths->batches;
      if (b.gathered) ++paths->gathered;
      int seen = paths->max_rows.load();
      while (int(b.rows) > seen && !paths->max_rows.compare_exchange_weak(seen, int(b.rows))) {
      }
    }
    for (size_t r = 0; r < b.rows; ++r) {
      const float* x = b.row<const float>(kX, r);
      float* y = b.row<float>(kY, r);
      double sum = 0, mx = -INFINITY;
      for (size_t i = 0; i < b.n; ++i) {
        sum += x[i];
        mx = std::max(mx, double(x[i]));
      }
      const int64_t label = *b.row<const int64_t>(kLabel, r);
      *b.row<double>(kPicked, r) = label >= 0 && size_t(label) < b.n ? double(x[label]) : NAN;
      double* stats = b.row<double>(kStats, r);
      stats[0] = sum;
      stats[1] = mx;
      *b.row<double>(kSum, r) = sum;
      for (size_t i = 0; i < b.n; ++i) y[i] = 2 * x[i];  // after every read of x: in place is fine
    }
  });
  return d.row_value_sum(kSum);
}

// An N-D problem in user layouts: x of `shape` read through `x_strides`, reduced along `axis`.
struct Problem {
  std::vector<int64_t> shape, x_strides;
  int axis;
};

// Offsets (elements) of every multi-index of `shape` in C order, under `strides`.
std::vector<int64_t> offsets(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) {
  int64_t size = 1;
  for (int64_t e : shape) size *= e;
  std::vector<int64_t> out(size_t(size), 0);
  for (int64_t i = 0; i < size; ++i) {
    int64_t rem = i, off = 0;
    for (size_t d = shape.size(); d-- > 0;) {
      off += (rem % shape[d]) * strides[d];
      rem /= shape[d];
    }
    out[size_t(i)] = off;
  }
  return out;
}

// Runs the toy on `p` and checks every output element against loops over the multi-index.
void check_problem(const Problem& p, Paths* paths = nullptr, int threads = 0) {
  const int nd = int(p.shape.size());
  const int axis = p.axis < 0 ? p.axis + nd : p.axis;
  const int64_t n = p.shape[size_t(axis)];
  std::vector<int64_t> rshape = p.shape, kshape = p.shape;
  rshape.erase(rshape.begin() + axis);
  kshape[size_t(axis)] = 2;
  int64_t span = 1, origin = 0;  // origin: the element [0, ..., 0] (after the others for negative strides)
  for (int d = 0; d < nd; ++d) {
    span += (p.shape[size_t(d)] - 1) * std::abs(p.x_strides[size_t(d)]);
    if (p.x_strides[size_t(d)] < 0) origin -= (p.shape[size_t(d)] - 1) * p.x_strides[size_t(d)];
  }
  std::vector<float> xbuf(size_t(std::max<int64_t>(span, 1)));
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (float& v : xbuf) v = normal(rng);
  int64_t rows = 1;
  for (int64_t e : rshape) rows *= e;
  std::vector<int64_t> labels(static_cast<size_t>(rows));
  for (size_t r = 0; r < labels.size(); ++r) labels[r] = int64_t(r * 7 % (n + 1)) - (r % 5 == 0);  // some out of range
  const std::vector<int64_t> ys = c_strides(p.shape), rs = c_strides(rshape), ks = c_strides(kshape);
  int64_t size = 1;
  for (int64_t e : p.shape) size *= e;
  std::vector<float> y(size_t(size), -1.f);
  std::vector<double> picked(size_t(rows), -1.0), stats(size_t(rows * 2), -1.0);
  Toy t{view<const float>(xbuf.data() + origin, p.shape, p.x_strides), view<const int64_t>(labels.data(), rshape, rs),
        view<float>(y.data(), p.shape, ys), view<double>(picked.data(), rshape, rs),
        view<double>(stats.data(), kshape, ks), p.axis};
  if (threads) logitkit::set_num_threads(threads);
  const double total = run_toy(t, paths);

  // The reference: for each row (multi-index over the other dims, C order), loop along the axis.
  const std::vector<int64_t> xoff = offsets(p.shape, p.x_strides);
  double expected_total = 0;
  std::vector<int64_t> idx(size_t(nd), 0);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t rem = r;
    for (int d = nd - 1; d >= 0; --d) {
      if (d == axis) continue;
      idx[size_t(d)] = rem % p.shape[size_t(d)];
      rem /= p.shape[size_t(d)];
    }
    double sum = 0, mx = -INFINITY, pick = NAN;
    for (int64_t i = 0; i < n; ++i) {
      idx[size_t(axis)] = i;
      int64_t flat = 0;
      for (int d = 0; d < nd; ++d) flat = flat * p.shape[size_t(d)] + idx[size_t(d)];
      const float v = xbuf[size_t(origin + xoff[size_t(flat)])];
      sum += v;
      mx = std::max(mx, double(v));
      if (i == labels[size_t(r)]) pick = v;
      ASSERT_EQ(y[size_t(flat)], 2 * v) << "y at row " << r << ", element " << i;
    }
    expected_total += sum;
    if (std::isnan(pick)) {
      EXPECT_TRUE(std::isnan(picked[size_t(r)])) << r;
    } else {
      EXPECT_EQ(picked[size_t(r)], pick) << r;
    }
    const double expected_stats[2] = {sum, mx};
    for (int64_t j = 0; j < 2; ++j) {  // element j of row r: the multi-index with the axis at j
      idx[size_t(axis)] = j;
      int64_t flat = 0;
      for (int d = 0; d < nd; ++d) flat = flat * kshape[size_t(d)] + idx[size_t(d)];
      EXPECT_EQ(stats[size_t(flat)], expected_stats[j]) << r << "," << j;
    }
  }
  EXPECT_NEAR(total, expected_total, 1e-9 * (1 + std::abs(expected_total)));
}

class RowDriverTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = logitkit::get_num_threads(); }
  void TearDown() override { logitkit::set_num_threads(saved_); }
  int saved_ = 1;
};

TEST_F(RowDriverTest, ContiguousRowsRunInBatches) {
  Paths paths;
  check_problem({{300, 17}, {17, 1}, -1}, &paths);
  EXPECT_GT(paths.max_rows.load(), 1);  // several rows per kernel call
  EXPECT_EQ(paths.gathered.load(), 0);
}

TEST_F(RowDriverTest, StridedRowsAreGatheredAndScattered) {
  Paths paths;
  check_problem({{300, 17}, {1, 300}, -1}, &paths);  // x read along a strided axis (transposed)
  EXPECT_GT(paths.gathered.load(), 0);
  Paths axis0;
  check_problem({{40, 9}, {9, 1}, 0}, &axis0);  // softmax over axis 0 of a C array
  EXPECT_GT(axis0.gathered.load(), 0);
}

TEST_F(RowDriverTest, NonUniformRowsRunOneAtATime) {
  Paths paths;
  // rows of a (3, 5) outer grid with a gap: contiguous rows, not equally spaced
  check_problem({{3, 5, 8}, {64, 8, 1}, -1}, &paths);
  EXPECT_EQ(paths.max_rows.load(), 1);
  EXPECT_EQ(paths.gathered.load(), 0);
}

TEST_F(RowDriverTest, GeneralLayouts) {
  check_problem({{2, 3, 4, 5}, {1, 2, 6, 24}, 2});      // Fortran order, middle axis
  check_problem({{4, 6, 5}, {-30, 5, 1}, 1});           // negative stride
  check_problem({{7}, {1}, 0});                         // one row
  check_problem({{1, 1, 9}, {9, 9, 1}, -1});            // unit dims
  check_problem({{5, 1}, {1, 1}, -1});                  // rows of one element
  check_problem({{70, 3000}, {6000, 2}, -1});           // long strided rows: tile of few rows
}

TEST_F(RowDriverTest, EmptyProblems) {
  check_problem({{0, 4}, {4, 1}, -1});  // no rows: nothing runs
  Paths paths;
  check_problem({{6, 0}, {1, 1}, -1}, &paths);  // empty rows: the kernel still fills the per-row outputs
  EXPECT_GT(paths.batches.load(), 0);
}

TEST_F(RowDriverTest, ResultsDoNotDependOnTheThreadCount) {
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE(threads);
    check_problem({{5000, 33}, {33, 1}, -1}, nullptr, threads);
    check_problem({{33, 5000}, {5000, 1}, 0}, nullptr, threads);
  }
}

TEST_F(RowDriverTest, OrderedSumIsThreadInvariantAndCompensated) {
  // Small terms riding on +1e12 for half of each 4096-row block and on -1e12 for the other half
  // (24 blocks, then a partial block of small terms only): a naive running sum reaches 2e15 and
  // loses the small terms; the exact sum is the sum of the residuals v[i] -+ 1e12 (each exact).
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> v(24 * 4096 + 1000);
  double exact = 0;  // |residual| <= 2: sequential double error ~1e-11 here
  for (size_t i = 0; i < v.size(); ++i) {
    const double big = i >= 24 * 4096 ? 0.0 : i % 4096 < 2048 ? 1e12 : -1e12;
    v[i] = big + u(rng);
    exact += v[i] - big;
  }
  double first = 0;
  for (int threads : {1, 2, 3}) {
    logitkit::set_num_threads(threads);
    const double s = logitkit::ordered_sum(v.data(), int64_t(v.size()));
    if (threads == 1) first = s;
    EXPECT_EQ(std::memcmp(&s, &first, sizeof s), 0) << threads;
  }
  EXPECT_NEAR(first, exact, 1e-6);
  double naive = 0;
  for (double x : v) naive += x;
  EXPECT_GT(std::abs(naive - exact), 1.0);  // the data really needs the compensation
}

TEST_F(RowDriverTest, PartlyOverlappingInputIsReadFromACopy) {
  // y is x shifted by one element: rows written early would feed rows read later without a copy.
  std::vector<float> buf(201);
  std::iota(buf.begin(), buf.end(), 0.f);
  const std::vector<float> original = buf;
  RowDriver d(-1);
  const auto x = view<const float>(buf.data(), {20, 10}, {10, 1});
  const auto y = view<float>(buf.data() + 1, {20, 10}, {10, 1});
  const int kX = d.input(x, "x"), kY = d.output(y, "y");
  d.run([&](const RowBatch& b) {
    for (size_t r = 0; r < b.rows; ++r) {
      const float* xr = b.row<const float>(kX, r);
      float* yr = b.row<float>(kY, r);
      float prefix = 0;
      for (size_t i = 0; i < b.n; ++i) yr[i] = prefix += xr[i];  // reads ahead of its writes
    }
  });
  for (int r = 0; r < 20; ++r) {
    float prefix = 0;
    for (int i = 0; i < 10; ++i) {
      prefix += original[size_t(r * 10 + i)];
      ASSERT_EQ(buf[size_t(1 + r * 10 + i)], prefix) << r << "," << i;
    }
  }
}

// The message of the Error thrown while declaring x (3, 4) and then `more` operands to a driver
// over `axis` and checking it, or "no error".
template <class More>
std::string declare_error(int axis, More&& more) {
  static float xs[12] = {};
  try {
    RowDriver d(axis);
    d.input(view<const float>(xs, {3, 4}, {4, 1}), "x");
    more(d);
    d.check();
  } catch (const logitkit::Error& e) {
    return e.what();
  }
  return "no error";
}

TEST_F(RowDriverTest, ErrorsNameTheArgument) {
  static float ys[12];
  static int64_t labels[4];
  static double out[9];
  auto contains = [](const std::string& message, const char* part) {
    return message.find(part) != std::string::npos;
  };
  EXPECT_PRED2(contains, declare_error(-1, [](RowDriver& d) {
                 d.input(view<const int64_t>(labels, {4}, {1}), "target", RowExtent::kScalar);
               }),
               "target: shape must be x's shape without the reduced axis");
  EXPECT_PRED2(contains, declare_error(-1, [](RowDriver& d) {
                 d.output(view<double>(out, {3, 3}, {3, 1}), "topk", RowExtent::kK, 2);
               }),
               "topk: shape must be x's shape with the axis of extent 2");
  EXPECT_PRED2(contains, declare_error(-1, [](RowDriver& d) { d.output(view<float>(ys, {4, 3}, {3, 1}), "y"); }),
               "y: shape (4,3) does not match x shape (3,4)");
  EXPECT_PRED2(contains, declare_error(2, [](RowDriver&) {}), "axis");
  EXPECT_PRED2(contains, declare_error(-1, [](RowDriver& d) { d.output(view<float>(ys, {3, 4}, {0, 1}), "out"); }),
               "out: stride 0");
  // kScalar with the axis kept as 1, and reduced over axis 0
  EXPECT_EQ(declare_error(-1, [](RowDriver& d) {
              d.output(view<double>(out, {3, 1}, {1, 1}), "lse", RowExtent::kScalar);
            }),
            "no error");
  EXPECT_EQ(declare_error(0, [](RowDriver& d) {
              d.output(view<double>(out, {4}, {1}), "lse", RowExtent::kScalar);
              d.output(view<double>(out, {2, 4}, {4, 1}), "top2", RowExtent::kK, 2);
            }),
            "no error");
}

}  // namespace
