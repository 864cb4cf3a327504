// softmax / log_softmax / logsumexp through the public C++ API, on every ISA, against float64 references.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>


#include "test_util.h"

namespace {

using logitkit::ArrayView;
using logitkit::Error;
using logitkit::SoftmaxAlgorithm;
using logitkit::SoftmaxOptions;
using lktest::algorithm_name;
using lktest::kAllAlgorithms;

constexpr double kInf = std::numeric_limits<double>::infinity();

using lktest::contiguous;
using lktest::make_view;

// Element offsets of the first element of every row along `axis` (row-major order of the others).
template <class V>
std::vector<int64_t> row_offsets(const V& v, int axis) {
  std::vector<int64_t> offs{0};
  for (int d = 0; d < v.ndim; ++d) {
    if (d == axis) continue;
    std::vector<int64_t> next;
    for (int64_t o : offs)
      for (int64_t i = 0; i < v.shape[d]; ++i) next.push_back(o + i * v.strides[d]);
    offs.swap(next);
  }
  return offs;
}

// Compares y = (log_)softmax(x / temperature) along axis with the float64 reference, reporting the
// worst element relative to its tolerance. x0 holds the input values (a copy, for in-place calls).
// The two-pass algorithm takes exp of c x itself (no max subtracted first), so its argument error
// scales with |c x| rather than |c (x - max)|; `unshifted` widens the tolerance accordingly.
template <class T>
void expect_softmax(ArrayView<const T> x0, ArrayView<const T> y, int axis, double temperature, bool log,
                    const std::string& ctx, bool unshifted = false) {
  if (axis < 0) axis += x0.ndim;
  const double c = 1.0 / double(static_cast<T>(1.0 / temperature));  // the kernel's rounded 1/T
  const double cc = 1.0 / c;
  const auto xo = row_offsets(x0, axis), yo = row_offsets(y, axis);
  ASSERT_EQ(xo.size(), yo.size());
  const int64_t n = x0.shape[axis];
  double worst = 0, worst_y = 0, worst_ref = 0;
  int64_t worst_at = -1;
  for (size_t r = 0; r < xo.size(); ++r) {
    const T* xr = x0.data + xo[r];
    const lktest::RowRef ref = lktest::row_ref(xr, n, x0.strides[axis], cc);
    for (int64_t i = 0; i < n; ++i) {
      const double a = cc * (double(xr[i * x0.strides[axis]]) - ref.max);
      const double want = log ? a - ref.lse : std::exp(a - ref.lse);
      const double got = double(y.data[yo[r] + i * y.strides[axis]]);
      const double arg = unshifted ? std::fabs(a) + std::fabs(cc * ref.max) : a;
      const double tol = log ? lktest::log_tol<T>(want, a) : lktest::softmax_tol<T>(want, arg);
      const double ratio = std::isfinite(got) ? std::fabs(got - want) / tol : kInf;
      if (!(ratio <= worst)) {
        worst = std::isnan(ratio) ? kInf : ratio;
        worst_y = got;
        worst_ref = want;
        worst_at = int64_t(r) * n + i;
      }
    }
  }
  EXPECT_LE(worst, 1.0) << ctx << (log ? " log_softmax" : " softmax") << ": element " << worst_at << " = "
                        << worst_y << ", reference " << worst_ref << " (error/tolerance " << worst << ")";
}

// Compares out = logsumexp(x) along axis (out: x's shape without axis) with the float64 reference.
template <class T>
void expect_logsumexp(ArrayView<const T> x, const std::vector<T>& out, int axis, const std::string& ctx) {
  const auto xo = row_offsets(x, axis);
  ASSERT_EQ(xo.size(), out.size());
  const int64_t n = x.shape[axis];
  for (size_t r = 0; r < xo.size(); ++r) {
    const lktest::RowRef ref = lktest::row_ref(x.data + xo[r], n, x.strides[axis], 1.0);
    const double want = ref.max + ref.lse;
    ASSERT_LE(std::fabs(double(out[r]) - want), lktest::log_tol<T>(want, 0))
        << ctx << " logsumexp row " << r << ": " << out[r] << " vs " << want;
  }
}

// Whether softmax with algorithm `a` may run the two-pass kernel (kAuto picks it for rows larger
// than half the L2 cache, which is at least 128 KiB on any CPU we target).
template <class T>
bool may_be_two_pass(SoftmaxAlgorithm a, const ArrayView<const T>& x, int axis) {
  if (axis < 0) axis += x.ndim;
  return a == SoftmaxAlgorithm::kTwoPass ||
         (a == SoftmaxAlgorithm::kAuto && x.shape[axis] * int64_t(sizeof(T)) > (int64_t{1} << 17));
}

// Runs softmax and log_softmax (every algorithm) and logsumexp on x -> fresh outputs shaped like x.
template <class T>
void check_all_ops(ArrayView<const T> x, int axis, const std::string& ctx, double temperature = 1.0) {
  const int64_t size = x.size();
  std::vector<T> ybuf(size_t(std::max<int64_t>(size, 1)));
  std::vector<int64_t> shape(x.shape, x.shape + x.ndim);
  auto y = contiguous(ybuf.data(), shape);
  for (SoftmaxAlgorithm a : kAllAlgorithms) {
    std::fill(ybuf.begin(), ybuf.end(), T(-7));
    logitkit::softmax<T>(x, y, axis, SoftmaxOptions{temperature, a});
    expect_softmax<T>(x, y, axis, temperature, false, ctx + " " + algorithm_name(a), may_be_two_pass<T>(a, x, axis));
  }
  logitkit::log_softmax<T>(x, y, axis, SoftmaxOptions{temperature});
  expect_softmax<T>(x, y, axis, temperature, true, ctx);
  if (temperature == 1.0) {
    const int ax = axis < 0 ? axis + x.ndim : axis;
    std::vector<int64_t> out_shape;
    for (int d = 0; d < x.ndim; ++d)
      if (d != ax) out_shape.push_back(x.shape[d]);
    std::vector<T> out(size_t(size / std::max<int64_t>(x.shape[ax], 1)), T(-7));
    logitkit::logsumexp<T>(x, contiguous(out.data(), out_shape), axis);
    expect_logsumexp<T>(x, out, ax, ctx);
  }
}

class Softmax : public lktest::IsaTest {};
LKTEST_FOR_EACH_ISA(Softmax);

template <class T>
void tail_lengths() {
  // Every length up to 70 covers 0..3 full vectors of 16 float lanes plus every tail length.
  for (int64_t n = 1; n <= 70; ++n) {
    auto x = lktest::randn<T>(size_t(3 * n), 1000 + n, 3.0, 40.0);
    check_all_ops<T>(contiguous<const T>(x.data(), {3, n}), -1, "n=" + std::to_string(n));
  }
}
TEST_P(Softmax, EveryTailLengthF32) { tail_lengths<float>(); }
TEST_P(Softmax, EveryTailLengthF64) { tail_lengths<double>(); }

template <class T>
void many_rows() {
  auto x = lktest::randn<T>(300 * 333, 7, 5.0);
  check_all_ops<T>(contiguous<const T>(x.data(), {300, 333}), 1, "300x333");
}
TEST_P(Softmax, ManyRowsF32) { many_rows<float>(); }
TEST_P(Softmax, ManyRowsF64) { many_rows<double>(); }

template <class T>
void strided() {
  auto buf = lktest::randn<T>(64 * 80, 11, 4.0);
  // Axis 0 of a C-contiguous matrix: the row is strided (gather/scatter path).
  check_all_ops<T>(contiguous<const T>(buf.data(), {37, 29}), 0, "axis0");
  // Every other element of every other row, rows of length 33.
  check_all_ops<T>(make_view<const T>(buf.data(), {20, 33}, {2 * 80, 2}), 1, "step2");
  // Negative strides: the same matrix read backwards in both dimensions.
  check_all_ops<T>(make_view<const T>(buf.data() + 64 * 80 - 1, {64, 80}, {-80, -1}), 1, "reversed");
  // Uneven outer strides (rows not equally spaced after coalescing) on the contiguous-row path.
  check_all_ops<T>(make_view<const T>(buf.data(), {3, 5, 41}, {1600, 81, 1}), 2, "outer3d");
}
TEST_P(Softmax, StridedF32) { strided<float>(); }
TEST_P(Softmax, StridedF64) { strided<double>(); }

// Input and output with different layouts: y is the Fortran-order (transposed) copy of x's shape.
template <class T>
void different_layouts() {
  auto xb = lktest::randn<T>(45 * 31, 12, 2.0);
  auto x = contiguous<const T>(xb.data(), {45, 31});
  std::vector<T> yb(xb.size());
  auto y = make_view<T>(yb.data(), {45, 31}, {1, 45});
  for (int axis : {0, 1}) {
    for (SoftmaxAlgorithm a : kAllAlgorithms) {
      logitkit::softmax<T>(x, y, axis, SoftmaxOptions{1.0, a});
      expect_softmax<T>(x, y, axis, 1.0, false, "fortran-out axis " + std::to_string(axis), a == SoftmaxAlgorithm::kTwoPass);
    }
    logitkit::log_softmax<T>(x, y, axis);
    expect_softmax<T>(x, y, axis, 1.0, true, "fortran-out axis " + std::to_string(axis));
  }
}
TEST_P(Softmax, DifferentLayoutsF32) { different_layouts<float>(); }
TEST_P(Softmax, DifferentLayoutsF64) { different_layouts<double>(); }

template <class T>
void n_dim() {
  auto x = lktest::randn<T>(4 * 5 * 6 * 7, 13, 3.0);
  auto v = contiguous<const T>(x.data(), {4, 5, 6, 7});
  for (int axis = -4; axis < 4; ++axis) check_all_ops<T>(v, axis, "4-D axis " + std::to_string(axis));
  // logsumexp with the reduced axis kept as size 1 (keepdims).
  std::vector<T> out(4 * 6 * 7);
  logitkit::logsumexp<T>(v, contiguous(out.data(), {4, 1, 6, 7}), 1);
  expect_logsumexp<T>(v, out, 1, "keepdims");
}
TEST_P(Softmax, NDimF32) { n_dim<float>(); }
TEST_P(Softmax, NDimF64) { n_dim<double>(); }

template <class T>
void long_row() {
  // Rows of >= 2^18 elements are split into chunks across threads.
  const int64_t n = (int64_t{1} << 18) + 37;
  auto x = lktest::randn<T>(size_t(2 * n), 17, 6.0, -20.0);
  check_all_ops<T>(contiguous<const T>(x.data(), {2, n}), 1, "long row");
  check_all_ops<T>(contiguous<const T>(x.data(), {2, n}), 1, "long row T=0.7", 0.7);
}
TEST_P(Softmax, LongRowF32) { long_row<float>(); }
TEST_P(Softmax, LongRowF64) { long_row<double>(); }

// three_pass_reload takes exp(c x) without the max shift when every |c x| <= 64, and shifts the
// other rows. A batch mixes both kinds, at and just past the bound, with -inf and NaN; each row
// keeps the bits it gets alone. Long rows are pipelined (each row's range check rides in the
// previous row's loop); short ones run two at a time in lockstep, and a pair with a shifted row
// falls back to one row at a time.
template <class T>
void unshifted_and_shifted_rows(int64_t kN) {
  constexpr int64_t kRows = 9;
  auto x = lktest::randn<T>(size_t(kRows * kN), 77, 8.0);
  T* r = x.data();
  r[1 * kN + 5] = T(64);                                  // at the bound: unshifted
  r[2 * kN + 9] = std::nextafter(T(64), T(100));          // just past it: shifted
  r[3 * kN + kN - 1] = T(-65);                            // past it in the tail
  r[4 * kN + std::min<int64_t>(100, kN - 1)] = -std::numeric_limits<T>::infinity();  // masked logit
  r[5 * kN + 7] = std::numeric_limits<T>::quiet_NaN();
  for (int64_t i = 0; i < kN; ++i) r[6 * kN + i] = T(i % 129) - T(64);  // the whole range
  r[7 * kN + 2] = T(200);
  for (double temperature : {1.0, 4.0}) {  // with temperature 4, |x| = 200 passes (c x = 50)
    SoftmaxOptions opt;
    opt.temperature = temperature;
    opt.algorithm = SoftmaxAlgorithm::kThreePassReload;
    std::vector<T> batch(x.size()), alone(static_cast<size_t>(kN));
    logitkit::softmax(contiguous<const T>(x.data(), {kRows, kN}), contiguous(batch.data(), {kRows, kN}), -1, opt);
    for (int64_t row = 0; row < kRows; ++row) {
      logitkit::softmax(contiguous<const T>(r + row * kN, {kN}), contiguous(alone.data(), {kN}), -1, opt);
      EXPECT_EQ(0, std::memcmp(alone.data(), batch.data() + row * kN, sizeof(T) * size_t(kN)))
          << "n " << kN << " row " << row << " temperature " << temperature;
      if (row == 5) {
        for (int64_t i = 0; i < kN; ++i) EXPECT_TRUE(std::isnan(alone[size_t(i)]));
        continue;
      }
      // Against float64: c (x - max) exact in double; exp of the masked logit is 0.
      double m = -kInf, sum = 0;
      for (int64_t i = 0; i < kN; ++i) m = std::max(m, double(r[row * kN + i]));
      for (int64_t i = 0; i < kN; ++i) sum += std::exp((double(r[row * kN + i]) - m) / temperature);
      // Shifted rows round x - max (|x - max| up to 264 here: 2^-16 relative); unshifted float
      // rows with temperature 1 round nothing before the exp (for double, the reference rounds).
      const double eps = double(std::numeric_limits<T>::epsilon());
      const bool exact = std::is_same_v<T, float> && temperature == 1.0 && (row == 0 || row == 1 || row == 6);
      const double bound = (exact ? 4 : 2048) * eps;
      double worst = 0;
      for (int64_t i = 0; i < kN; ++i) {
        const double ref = std::exp((double(r[row * kN + i]) - m) / temperature) / sum;
        const double got = double(alone[size_t(i)]);
        if (ref > double(std::numeric_limits<T>::min())) worst = std::max(worst, std::fabs(got / ref - 1));
        else  // denormal results: the same relative bound, or 4 of the smallest denormals
          EXPECT_NEAR(got, ref, std::max(bound * ref, double(std::numeric_limits<T>::denorm_min()) * 4))
              << "n " << kN << " row " << row << " i " << i;
      }
      EXPECT_LE(worst, bound) << "n " << kN << " row " << row << " temperature " << temperature;
    }
  }
}
// Row lengths: pipelined (3001), and short rows in pairs (128, 64, 100 with a tail) or alone (12, 2000).
constexpr int64_t kMixedRowLengths[] = {3001, 2000, 128, 100, 64, 12};
TEST_P(Softmax, UnshiftedAndShiftedRowsF32) {
  for (int64_t n : kMixedRowLengths) unshifted_and_shifted_rows<float>(n);
}
TEST_P(Softmax, UnshiftedAndShiftedRowsF64) {
  for (int64_t n : kMixedRowLengths) unshifted_and_shifted_rows<double>(n);
}

// Outputs beyond the last-level cache take non-temporal stores, in softmax and log_softmax (short
// rows through a tile in scratch, placed at y's offset from a cache line). The rows must get the
// bits they get in a small batch, for y at NumPy's 16-byte offset from a line, and for y rows spaced wider than n.
// The size follows the library's own rule (last_level_cache_bytes).
template <class T>
void streamed_rows() {
  const int64_t llc = static_cast<int64_t>(logitkit::last_level_cache_bytes());
  // (n, extra elements between y's rows): short rows in pairs and alone, and long rows
  const int64_t cases[][2] = {{128, 0}, {128, 3}, {37, 0}, {3001, 3}};
  for (const auto& [n, pad] : cases) {
    const int64_t rows = llc / int64_t(sizeof(T) * n) + 7;
    std::vector<T> x(size_t(rows * n));
    uint64_t state = 91;
    for (T& v : x) {  // uniform in [-12, 12): a cheap generator, as the array is large
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      v = T(double(state >> 40) * (24.0 / double(1 << 24)) - 12.0);
    }
    x[size_t(5 * n + 1)] = T(90);  // a shifted row among unshifted ones
    x[size_t(9 * n)] = -std::numeric_limits<T>::infinity();
    for (bool log : {false, true}) {
      const int64_t ld = n + pad, batch = std::max<int64_t>(1, llc / 8 / int64_t(sizeof(T) * n));
      std::vector<T> big(size_t(rows * ld + 64 / sizeof(T))), small(size_t(batch * n));
      // y at 16 bytes past a cache line, as NumPy places large arrays
      const size_t skip = ((64 - reinterpret_cast<uintptr_t>(big.data()) % 64) % 64 + 16) / sizeof(T);
      T* y = big.data() + skip;
      SoftmaxOptions opt;
      opt.algorithm = SoftmaxAlgorithm::kThreePassReload;
      auto run = [&](ArrayView<const T> in, ArrayView<T> out) {
        if (log) {
          logitkit::log_softmax(in, out, -1, opt);
        } else {
          logitkit::softmax(in, out, -1, opt);
        }
      };
      run(contiguous<const T>(x.data(), {rows, n}), make_view(y, {rows, n}, {ld, 1}));
      for (int64_t r = 0; r < rows; r += batch) {  // batches of an eighth of the cache: not streamed
        const int64_t count = std::min<int64_t>(batch, rows - r);
        run(contiguous<const T>(x.data() + r * n, {count, n}), contiguous(small.data(), {count, n}));
        for (int64_t q = 0; q < count; ++q)
          ASSERT_EQ(0, std::memcmp(small.data() + q * n, y + (r + q) * ld, sizeof(T) * size_t(n)))
              << (log ? "log_softmax" : "softmax") << " n " << n << " pad " << pad << " row " << r + q;
      }
      auto sample = make_view<const T>(y, {9, n}, {ld, 1});  // rows 0-8: row 9 holds the -inf
      expect_softmax<T>(contiguous<const T>(x.data(), {9, n}), sample, -1, 1.0, log,
                        std::string(log ? "streamed log_softmax n " : "streamed softmax n ") + std::to_string(n));
    }
  }
}
TEST_P(Softmax, StreamedRowsF32) { streamed_rows<float>(); }
TEST_P(Softmax, StreamedRowsF64) { streamed_rows<double>(); }

template <class T>
void in_place() {
  for (bool strided_axis : {false, true}) {
    for (int op = 0; op < 6; ++op) {  // five softmax algorithms, then log_softmax
      auto orig = lktest::randn<T>(40 * 53, 19, 4.0);
      orig[3 * 53 + 5] = T(100);  // a row that needs the max shift (short rows then never speculate in place)
      std::vector<T> buf = orig;
      auto shape = std::vector<int64_t>{40, 53};
      auto v = contiguous<T>(buf.data(), shape);
      auto v0 = contiguous<const T>(orig.data(), shape);
      const int axis = strided_axis ? 0 : 1;
      const std::string ctx = std::string("in place ") + (strided_axis ? "axis0 " : "axis1 ");
      if (op < 5) {
        logitkit::softmax<T>(v, v, axis, SoftmaxOptions{1.0, kAllAlgorithms[op]});
        expect_softmax<T>(v0, v, axis, 1.0, false, ctx + algorithm_name(kAllAlgorithms[op]), kAllAlgorithms[op] == SoftmaxAlgorithm::kTwoPass);
      } else {
        logitkit::log_softmax<T>(v, v, axis);
        expect_softmax<T>(v0, v, axis, 1.0, true, ctx);
      }
    }
  }
  // A long row in place.
  const int64_t n = (int64_t{1} << 18) + 5;
  auto orig = lktest::randn<T>(size_t(n), 23, 3.0);
  for (SoftmaxAlgorithm a : kAllAlgorithms) {
    std::vector<T> buf = orig;
    auto v = contiguous<T>(buf.data(), {n});
    logitkit::softmax<T>(v, v, 0, SoftmaxOptions{1.0, a});
    expect_softmax<T>(contiguous<const T>(orig.data(), {n}), v, 0, 1.0, false,
                      std::string("long row in place ") + algorithm_name(a), a == SoftmaxAlgorithm::kTwoPass || a == SoftmaxAlgorithm::kAuto);
  }
}
TEST_P(Softmax, InPlaceF32) { in_place<float>(); }
TEST_P(Softmax, InPlaceF64) { in_place<double>(); }

template <class T>
void temperature() {
  auto x = lktest::randn<T>(8 * 101, 29, 3.0);
  for (double t : {0.05, 0.5, 1.0, 3.5, 100.0})
    check_all_ops<T>(contiguous<const T>(x.data(), {8, 101}), 1, "T=" + std::to_string(t), t);
}
TEST_P(Softmax, TemperatureF32) { temperature<float>(); }
TEST_P(Softmax, TemperatureF64) { temperature<double>(); }

// Large magnitudes: shift invariance must hold far beyond exp's range, and beyond 2^20 where the
// two-pass (mantissa, exponent) pair gives up and the kernels fall back to three passes.
template <class T>
void large_values() {
  for (double base : {1e3, -1e3, 3e6, -3e6, 1e30, -1e30}) {
    for (int64_t n : {int64_t{5}, int64_t{67}, (int64_t{1} << 18) + 3}) {
      std::vector<T> x(static_cast<size_t>(n));
      // Offsets are multiples of 0.25 (exact next to 3e6 in float); at 1e30 all values are equal.
      for (int64_t i = 0; i < n; ++i) x[size_t(i)] = static_cast<T>(base + 0.25 * double((i * 7) % 23));
      check_all_ops<T>(contiguous<const T>(x.data(), {n}), 0, "base " + std::to_string(base) + " n=" + std::to_string(n));
    }
  }
  // The largest finite values: x - max must not overflow.
  const T big = std::numeric_limits<T>::max();
  std::vector<T> x{big, -big, big, T(0)}, y(4);
  for (SoftmaxAlgorithm a : kAllAlgorithms) {
    logitkit::softmax<T>(contiguous<const T>(x.data(), {4}), contiguous(y.data(), {4}), 0, SoftmaxOptions{1.0, a});
    EXPECT_EQ(y, (std::vector<T>{T(0.5), T(0), T(0.5), T(0)})) << algorithm_name(a);
  }
}
TEST_P(Softmax, LargeValuesF32) { large_values<float>(); }
TEST_P(Softmax, LargeValuesF64) { large_values<double>(); }

template <class T>
void special_values() {
  const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
  for (int64_t n : {int64_t{3}, int64_t{40}, (int64_t{1} << 18) + 1}) {
    const std::string ctx = "n=" + std::to_string(n);
    auto finite = lktest::randn<T>(size_t(n), 31, 2.0);
    std::vector<T> y(static_cast<size_t>(n)), out(1);
    auto yv = contiguous(y.data(), {n});
    auto outv = contiguous(out.data(), std::vector<int64_t>{});

    // -inf entries contribute exactly 0 and leave the others a softmax of the finite entries.
    std::vector<T> x = finite;
    for (int64_t i = 0; i < n; i += 3) x[size_t(i)] = -inf;
    x[1] = T(0.5);
    auto xv = contiguous<const T>(x.data(), {n});
    const lktest::RowRef ref = lktest::row_ref(x.data(), n, 1, 1.0);  // exp(-inf) = 0 in the sum
    for (SoftmaxAlgorithm a : kAllAlgorithms) {
      logitkit::softmax<T>(xv, yv, 0, SoftmaxOptions{1.0, a});
      for (int64_t i = 0; i < n; ++i) {
        const double xi = double(x[size_t(i)]), yi = double(y[size_t(i)]);
        if (xi == -kInf) {
          ASSERT_EQ(yi, 0.0) << ctx << " " << algorithm_name(a) << " at " << i;
          ASSERT_FALSE(std::signbit(yi));
        } else {
          const double want = std::exp(xi - ref.max - ref.lse);
          ASSERT_LE(std::fabs(yi - want), lktest::softmax_tol<T>(want, xi - ref.max))
              << ctx << " " << algorithm_name(a) << " at " << i;
        }
      }
    }
    logitkit::log_softmax<T>(xv, yv, 0);
    for (int64_t i = 0; i < n; i += 3) ASSERT_EQ(y[size_t(i)], -inf) << ctx << " log_softmax at " << i;
    logitkit::logsumexp<T>(xv, outv, 0);
    EXPECT_NEAR(double(out[0]), ref.max + ref.lse, lktest::log_tol<T>(ref.max + ref.lse, 0)) << ctx;

    // A row of all -inf: softmax and log_softmax are NaN (0/0, as torch and SciPy), logsumexp is -inf.
    std::vector<T> all_ninf(size_t(n), -inf);
    auto nv = contiguous<const T>(all_ninf.data(), {n});
    for (SoftmaxAlgorithm a : kAllAlgorithms) {
      logitkit::softmax<T>(nv, yv, 0, SoftmaxOptions{1.0, a});
      for (T v : y) ASSERT_TRUE(std::isnan(v)) << ctx << " all -inf, " << algorithm_name(a);
    }
    logitkit::logsumexp<T>(nv, outv, 0);
    EXPECT_EQ(out[0], -inf) << ctx;

    // NaN anywhere in a row makes the whole row NaN, and logsumexp NaN.
    x = finite;
    x[size_t(n / 2)] = nan;
    xv = contiguous<const T>(x.data(), {n});
    for (SoftmaxAlgorithm a : kAllAlgorithms) {
      logitkit::softmax<T>(xv, yv, 0, SoftmaxOptions{1.0, a});
      for (T v : y) ASSERT_TRUE(std::isnan(v)) << ctx << " NaN row, " << algorithm_name(a);
    }
    logitkit::log_softmax<T>(xv, yv, 0);
    for (T v : y) ASSERT_TRUE(std::isnan(v)) << ctx << " NaN row, log_softmax";
    logitkit::logsumexp<T>(xv, outv, 0);
    EXPECT_TRUE(std::isnan(out[0])) << ctx;

    // +inf: logsumexp is +inf (SciPy).
    x = finite;
    x[0] = inf;
    logitkit::logsumexp<T>(contiguous<const T>(x.data(), {n}), outv, 0);
    EXPECT_EQ(out[0], inf) << ctx;
  }
}
TEST_P(Softmax, SpecialValuesF32) { special_values<float>(); }
TEST_P(Softmax, SpecialValuesF64) { special_values<double>(); }

// log_softmax keeps full relative precision in the dominant entry: log_softmax(x)_0 = -log1p(sum of
// the others), a tiny negative number that a plain c(x - max) - log(sum) would round away.
template <class T>
void log_softmax_dominant(double gap) {
  for (int64_t n : {int64_t{2}, int64_t{33}, (int64_t{1} << 18) + 2}) {
    std::vector<T> x(static_cast<size_t>(n), static_cast<T>(-gap)), y(static_cast<size_t>(n));
    x[0] = T(0);
    logitkit::log_softmax<T>(contiguous<const T>(x.data(), {n}), contiguous(y.data(), {n}), 0);
    const double want = -std::log1p(double(n - 1) * std::exp(double(static_cast<T>(-gap))));
    EXPECT_LE(std::fabs(double(y[0]) - want), 64 * lktest::eps<T>() * std::fabs(want))
        << "n=" << n << ": " << y[0] << " vs " << want;
  }
}
TEST_P(Softmax, LogSoftmaxDominantEntryF32) { log_softmax_dominant<float>(20.0); }
TEST_P(Softmax, LogSoftmaxDominantEntryF64) { log_softmax_dominant<double>(30.0); }

template <class T>
void logsumexp_weights() {
  for (int64_t n : {int64_t{1}, int64_t{17}, int64_t{300}, (int64_t{1} << 18) + 9}) {
    const std::string ctx = "n=" + std::to_string(n);
    auto x = lktest::randn<T>(size_t(2 * n), 37, 3.0);
    std::vector<T> b(size_t(2 * n));
    std::mt19937_64 rng(41);
    std::uniform_real_distribution<double> u(0.0, 2.0);
    for (auto& w : b) w = static_cast<T>(u(rng));
    std::vector<T> out(2), sign(2, T(5));
    auto xv = contiguous<const T>(x.data(), {2, n});
    logitkit::logsumexp<T>(xv, contiguous(out.data(), {2}), 1, contiguous<const T>(b.data(), {2, n}),
                           contiguous(sign.data(), {2}));
    for (int r = 0; r < 2; ++r) {
      double m = -kInf, s = 0;
      for (int64_t i = 0; i < n; ++i) m = std::max(m, double(x[size_t(r * n + i)]));
      for (int64_t i = 0; i < n; ++i) s += double(b[size_t(r * n + i)]) * std::exp(double(x[size_t(r * n + i)]) - m);
      const double want = m + std::log(s);
      EXPECT_NEAR(double(out[size_t(r)]), want, lktest::log_tol<T>(want, 0)) << ctx << " row " << r;
      EXPECT_EQ(sign[size_t(r)], T(1)) << ctx;
    }
    // Broadcast weights (stride 0 along the axis): log(sum w e^x) = log(w) + logsumexp(x).
    const T w = T(0.375);
    std::vector<T> plain(2);
    logitkit::logsumexp<T>(xv, contiguous(plain.data(), {2}), 1);
    logitkit::logsumexp<T>(xv, contiguous(out.data(), {2}), 1, make_view<const T>(&w, {2, n}, {0, 0}));
    for (int r = 0; r < 2; ++r)
      EXPECT_NEAR(double(out[size_t(r)]), double(plain[size_t(r)]) + std::log(0.375),
                  lktest::log_tol<T>(double(plain[size_t(r)]), 0))
          << ctx;
  }
  // Negative sums: sign -1 and log|sum|; without `sign` the result is NaN (SciPy).
  std::vector<T> x{T(1), T(2)}, b{T(1), T(-1)}, out(1), sign(1);
  auto xv = contiguous<const T>(x.data(), {2});
  auto bv = contiguous<const T>(b.data(), {2});
  auto ov = contiguous(out.data(), std::vector<int64_t>{});
  logitkit::logsumexp<T>(xv, ov, 0, bv, contiguous(sign.data(), std::vector<int64_t>{}));
  EXPECT_EQ(sign[0], T(-1));
  const double want = std::log(std::exp(2.0) - std::exp(1.0));
  EXPECT_NEAR(double(out[0]), want, lktest::log_tol<T>(want, 0));
  logitkit::logsumexp<T>(xv, ov, 0, bv);
  EXPECT_TRUE(std::isnan(out[0]));
  // Zero weights drop their element entirely, even +inf and NaN.
  const T inf = std::numeric_limits<T>::infinity();
  std::vector<T> x2{T(0), inf, std::numeric_limits<T>::quiet_NaN(), T(1)}, b2{T(1), T(0), T(0), T(1)};
  logitkit::logsumexp<T>(contiguous<const T>(x2.data(), {4}), ov, 0, contiguous<const T>(b2.data(), {4}));
  EXPECT_NEAR(double(out[0]), std::log(1.0 + std::exp(1.0)), lktest::log_tol<T>(1.4, 0));
  // An empty axis sums to 0: logsumexp -inf, sign 0.
  std::vector<T> out3(3, T(1)), sign3(3, T(1));
  logitkit::logsumexp<T>(make_view<const T>(x.data(), {3, 0}, {0, 1}), contiguous(out3.data(), {3}), 1, {},
                         contiguous(sign3.data(), {3}));
  EXPECT_EQ(out3, (std::vector<T>{-inf, -inf, -inf}));
  EXPECT_EQ(sign3, (std::vector<T>{T(0), T(0), T(0)}));
}
TEST_P(Softmax, LogsumexpWeightsF32) { logsumexp_weights<float>(); }
TEST_P(Softmax, LogsumexpWeightsF64) { logsumexp_weights<double>(); }

// Size-1 axes and empty arrays.
template <class T>
void degenerate() {
  std::vector<T> x{T(-3), T(5), T(1e3)}, y(3, T(9));
  logitkit::softmax<T>(contiguous<const T>(x.data(), {3, 1}), contiguous(y.data(), {3, 1}), 1);
  EXPECT_EQ(y, (std::vector<T>{T(1), T(1), T(1)}));
  logitkit::log_softmax<T>(contiguous<const T>(x.data(), {3, 1}), contiguous(y.data(), {3, 1}), 1);
  EXPECT_EQ(y, (std::vector<T>{T(0), T(0), T(0)}));
  // Empty arrays: nothing is read or written, no error.
  logitkit::softmax<T>(make_view<const T>(nullptr, {0, 4}, {4, 1}), make_view<T>(nullptr, {0, 4}, {4, 1}), 1);
  logitkit::softmax<T>(make_view<const T>(nullptr, {4, 0}, {0, 1}), make_view<T>(nullptr, {4, 0}, {0, 1}), 1);
  // The rows x cols pointer overload.
  std::vector<T> m{T(0), std::log(T(3))}, r(2);
  logitkit::softmax(m.data(), r.data(), 1, 2);
  EXPECT_NEAR(double(r[0]), 0.25, 4 * lktest::eps<T>());
  EXPECT_NEAR(double(r[1]), 0.75, 4 * lktest::eps<T>());
}
TEST_P(Softmax, DegenerateShapesF32) { degenerate<float>(); }
TEST_P(Softmax, DegenerateShapesF64) { degenerate<double>(); }

// Runs f and expects logitkit::Error naming `argument`.
template <class F>
void expect_error(F&& f, const std::string& argument, Error::Kind kind = Error::Kind::kInvalidArgument) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one naming '" << argument << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), argument) << e.what();
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(argument), std::string::npos) << e.what();
  }
}

TEST_P(Softmax, Errors) {
  std::vector<float> x(12, 1.0f), y(12), out(4), sign(4), b(12, 1.0f);
  auto xv = contiguous<const float>(x.data(), {3, 4});
  auto yv = contiguous(y.data(), {3, 4});
  for (int axis : {2, -3, 100})
    expect_error([&] { logitkit::softmax<float>(xv, yv, axis); }, "axis");
  expect_error([&] { logitkit::log_softmax<float>(xv, yv, 5); }, "axis");
  expect_error([&] { logitkit::logsumexp<float>(xv, contiguous(out.data(), {3}), 7); }, "axis");
  expect_error([&] { logitkit::softmax<float>(xv, contiguous(y.data(), {4, 3}), 1); }, "y");
  expect_error([&] { logitkit::softmax<float>(xv, contiguous(y.data(), {12}), 0); }, "y");
  expect_error([&] { logitkit::log_softmax<float>(xv, contiguous(y.data(), {3, 4, 1}), 1); }, "y");
  for (double t : {0.0, -1.0, std::nan(""), kInf, 1e-300})
    expect_error([&] { logitkit::softmax<float>(xv, yv, 1, SoftmaxOptions{t}); }, "temperature");
  expect_error([&] { logitkit::log_softmax<double>(
                         contiguous<const double>(nullptr, {0, 2}), contiguous<double>(nullptr, {0, 2}), 1,
                         SoftmaxOptions{-2.0}); },
               "temperature");
  expect_error([&] { logitkit::logsumexp<float>(xv, contiguous(out.data(), {4}), 1); }, "out");
  expect_error([&] { logitkit::logsumexp<float>(xv, contiguous(out.data(), {3, 2}), 1); }, "out");
  expect_error([&] { logitkit::logsumexp<float>(xv, contiguous(out.data(), {3}), 1, contiguous<const float>(b.data(), {4, 3})); },
               "b");
  expect_error([&] { logitkit::logsumexp<float>(xv, contiguous(out.data(), {3}), 1, {}, contiguous(sign.data(), {4})); },
               "sign");
  expect_error([&] { logitkit::softmax<float>(contiguous<const float>(nullptr, {2, 2}), yv, 1); }, "x");
  expect_error([&] { logitkit::softmax<float>(make_view<const float>(x.data(), {3, -4}, {4, 1}), yv, 1); }, "x");
  // Views the library must refuse rather than read or write out of bounds.
  expect_error([&] { logitkit::softmax<float>(xv, make_view(y.data(), {3, 4}, {0, 1}), 1); }, "y");  // broadcast output
  expect_error([&] { logitkit::logsumexp<float>(xv, make_view(out.data(), {3}, {0}), 1); }, "out");
  expect_error([&] { logitkit::softmax<float>(make_view<const float>(x.data(), {int64_t{1} << 62, 4}, {4, 1}),
                                              make_view(y.data(), {int64_t{1} << 62, 4}, {4, 1}), 1); },
               "x");  // the element count overflows int64
  expect_error([&] { logitkit::softmax<float>(make_view<const float>(x.data(), {3, 4}, {INT64_MAX / 2, 1}), yv, 1); },
               "x");  // element offsets overflow
  {
    ArrayView<float> bad = yv;
    bad.ndim = logitkit::kMaxDims + 1;  // converted to a const view without reading past shape[]
    expect_error([&] { logitkit::softmax<float>(bad, yv, 0); }, "x");
  }
  expect_error([&] { ArrayView<float>::contiguous(y.data(), {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}); },
               "shape");
  // Bad backend names, as LOGITKIT_ISA would give them.
  for (const char* name : {"bogus", "", "AVX2", "sse"})
    expect_error([&] { logitkit::set_isa(name); }, "isa", Error::Kind::kUnsupportedIsa);
  EXPECT_EQ(logitkit::isa(), GetParam());  // a failed set_isa leaves the backend unchanged
}

// x and y sharing memory other than element for element (y one element past x, or x reversed
// over y): the result is the out-of-place one, as the kernels read a copy of x.
template <class T>
void partial_overlap() {
  constexpr int64_t kRows = 64, kN = 2048;  // pipelined rows, two threads
  const auto x = lktest::randn<T>(size_t(kRows * kN), 17, 4.0);
  std::vector<T> expected(x.size()), buf(x.size() + 1);
  for (bool log : {false, true}) {
    auto run = [&](ArrayView<const T> in, ArrayView<T> out) {
      log ? logitkit::log_softmax<T>(in, out, 1) : logitkit::softmax<T>(in, out, 1);
    };
    run(contiguous<const T>(x.data(), {kRows, kN}), contiguous(expected.data(), {kRows, kN}));
    std::copy(x.begin(), x.end(), buf.begin());
    run(contiguous<const T>(buf.data(), {kRows, kN}), contiguous(buf.data() + 1, {kRows, kN}));
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), buf.begin() + 1)) << (log ? "log_softmax" : "softmax");
    std::copy(x.begin(), x.end(), buf.begin() + 1);  // x read backwards while y is written forwards
    std::vector<T> reversed(x.rbegin(), x.rend()), want(x.size());
    run(contiguous<const T>(reversed.data(), {kRows, kN}), contiguous(want.data(), {kRows, kN}));
    run(make_view<const T>(buf.data() + x.size(), {kRows, kN}, {-kN, -1}), contiguous(buf.data(), {kRows, kN}));
    EXPECT_TRUE(std::equal(want.begin(), want.end(), buf.begin())) << (log ? "log_softmax" : "softmax") << " reversed";
  }
  std::vector<T> lse(kRows);  // logsumexp's out over the start of x
  logitkit::logsumexp<T>(contiguous<const T>(x.data(), {kRows, kN}), contiguous(lse.data(), {kRows}), 1);
  std::copy(x.begin(), x.end(), buf.begin());
  logitkit::logsumexp<T>(contiguous<const T>(buf.data(), {kRows, kN}), contiguous(buf.data() + 5, {kRows}), 1);
  EXPECT_TRUE(std::equal(lse.begin(), lse.end(), buf.begin() + 5)) << "logsumexp";
}

TEST_P(Softmax, PartialOverlapF32) { partial_overlap<float>(); }
TEST_P(Softmax, PartialOverlapF64) { partial_overlap<double>(); }


// The dominant entry is correctly rounded (the Softmax-Collapse regime): p_max = 1 / (1 + R) with R
// the others' share, against long double, on every ISA and algorithm, in short and pipelined rows.
// [-38.5, -56] gave 0.99999994 (1 ulp low: the rounding of the whole sum); the correctly rounded
// value is 1.
template <class T>
void dominant_entry_correctly_rounded() {
  for (auto a : lktest::kAllAlgorithms) {
    const T pair[2] = {T(-38.5), T(-56)};
    T out[2];
    logitkit::softmax<T>(ArrayView<const T>::contiguous(pair, {2}), ArrayView<T>::contiguous(out, {2}), 0,
                         {1.0, a});
    const T expected = std::is_same<T, float>::value ? T(1) : T(1 / (1 + std::exp(-17.5L)));
    EXPECT_EQ(out[0], expected);
    for (int64_t n : {int64_t{5}, int64_t{300}, int64_t{2000}}) {
      const int64_t rows = 40;
      auto x = lktest::randn<T>(size_t(rows * n), uint64_t(n), 2.0, -40.0);
      const long double boundary = std::is_same<T, float>::value ? 17.3L : 37.4L;  // R near 2^-25 (2^-54)
      for (int64_t r = 0; r < rows; ++r) {
        T* row = x.data() + r * n;
        const T top = *std::max_element(row, row + n);
        row[(r * 7) % n] = top + T(boundary + std::log(static_cast<long double>(n)) - 3 + 6.0L * r / rows);
      }
      std::vector<T> y(x.size());
      logitkit::softmax<T>(ArrayView<const T>::contiguous(x.data(), {rows, n}),
                           ArrayView<T>::contiguous(y.data(), {rows, n}), 1, {1.0, a});
      for (int64_t r = 0; r < rows; ++r) {
        const T* row = x.data() + r * n;
        const int64_t i = std::max_element(row, row + n) - row;
        long double others = 0;
        for (int64_t j = 0; j < n; ++j)
          if (j != i) others += std::exp(static_cast<long double>(row[j]) - row[i]);
        const long double p = 1 / (1 + others);
        const T rounded = static_cast<T>(p);
        // Skip rows within float32 exp error of a rounding boundary (none in practice).
        const long double below = std::nextafter(rounded, T(0)), above = std::nextafter(rounded, T(2));
        const long double margin = others * 1e-6L;
        if (std::fabs(p - (rounded + below) / 2) < margin || std::fabs(p - (rounded + above) / 2) < margin) continue;
        EXPECT_EQ(y[size_t(r * n + i)], rounded)
            << lktest::algorithm_name(a) << " n=" << n << " row " << r << " p=" << static_cast<double>(p);
      }
    }
  }
}
TEST_P(Softmax, DominantEntryCorrectlyRoundedF32) { dominant_entry_correctly_rounded<float>(); }
TEST_P(Softmax, DominantEntryCorrectlyRoundedF64) { dominant_entry_correctly_rounded<double>(); }

}  // namespace
