// The gemm micro-kernel family through logitkit::gemm on every ISA, against a float64 reference:
// every tail of the register tile (m, n around MR, NR and their multiples), K across the K-block
// boundary, transposed and strided operands, alpha, accumulate, thread invariance, and errors.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "logitkit/gemm.h"
#include "test_util.h"

namespace {

using lktest::make_view;

class Gemm : public lktest::IsaTest {};

// C = alpha A B (+ C0) in double, A (m x k) at a[i * ars + p * acs], B (k x n) likewise.
template <class T>
std::vector<double> reference(const std::vector<T>& a, int64_t ars, int64_t acs, const std::vector<T>& b, int64_t brs,
                              int64_t bcs, const std::vector<T>& c0, int64_t m, int64_t n, int64_t k, double alpha,
                              bool accumulate) {
  std::vector<double> c(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += double(a[size_t(i * ars + p * acs)]) * double(b[size_t(p * brs + j * bcs)]);
      c[size_t(i * n + j)] = alpha * s + (accumulate ? double(c0[size_t(i * n + j)]) : 0.0);
    }
  return c;
}

template <class T>
void check_shape(int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b, double alpha, bool accumulate,
                 std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<T> a(size_t(m * k)), b(size_t(k * n)), c(size_t(m * n));
  for (T& v : a) v = T(u(rng));
  for (T& v : b) v = T(u(rng));
  for (T& v : c) v = T(u(rng));
  const std::vector<T> c0 = c;
  // A (m x k) stored row-major, or as the transpose of a row-major (k x m) matrix
  const int64_t ars = trans_a ? 1 : k, acs = trans_a ? m : 1;
  const int64_t brs = trans_b ? 1 : n, bcs = trans_b ? k : 1;
  logitkit::GemmOptions o;
  o.alpha = alpha;
  o.accumulate = accumulate;
  logitkit::gemm<T>(make_view<const T>(a.data(), {m, k}, {ars, acs}), make_view<const T>(b.data(), {k, n}, {brs, bcs}),
                    make_view<T>(c.data(), {m, n}, {n, 1}), o);
  const std::vector<double> want = reference(a, ars, acs, b, brs, bcs, c0, m, n, k, alpha, accumulate);
  // float: K products rounded to float and summed in float, against an exact sum of magnitude <= K
  const double tol = (std::is_same_v<T, float> ? 2e-6 : 4e-15) * double(k + 2) * (std::fabs(alpha) + 1);
  for (int64_t i = 0; i < m * n; ++i)
    ASSERT_NEAR(double(c[size_t(i)]), want[size_t(i)], tol)
        << "m=" << m << " n=" << n << " k=" << k << " ta=" << trans_a << " tb=" << trans_b << " at " << i;
}

TEST_P(Gemm, EveryRegisterTileTail) {
  std::mt19937 rng(1);
  // MR is 4, 6 or 12 and NR 4, 8, 16 or 32 depending on the ISA: cover 1..2*max+1 of each.
  for (int64_t m : {1, 2, 3, 5, 6, 7, 11, 12, 13, 25})
    for (int64_t n : {1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 65})
      for (int64_t k : {1, 5}) {
        check_shape<float>(m, n, k, false, false, 1.0, false, rng);
        check_shape<double>(m, n, k, false, true, 1.0, false, rng);
      }
}

TEST_P(Gemm, BlocksTransposesAlphaAccumulate) {
  std::mt19937 rng(2);
  // K across the 256-wide K block, M across the 96-row A block and the 192-row task tile, N across
  // the 256-column task tile; both operands in either layout.
  for (int64_t m : {97, 193})
    for (int64_t n : {257, 40})
      for (int64_t k : {255, 256, 257, 600})
        for (int layout = 0; layout < 4; ++layout) {
          check_shape<float>(m, n, k, layout & 1, layout & 2, layout == 3 ? -0.5 : 1.0, layout >= 2, rng);
          if (m == 97 && n == 40) check_shape<double>(m, n, k, layout & 1, layout & 2, 2.0, layout & 1, rng);
        }
}

TEST_P(Gemm, EmptyKAndZeroSizes) {
  std::vector<float> c(6, 5.0f), a(1), b(1);
  logitkit::gemm<float>(make_view<const float>(a.data(), {2, 0}, {0, 1}), make_view<const float>(b.data(), {0, 3}, {3, 1}),
                        make_view<float>(c.data(), {2, 3}, {3, 1}));
  for (float v : c) EXPECT_EQ(v, 0.0f);  // an empty sum
  c.assign(6, 5.0f);
  logitkit::GemmOptions acc;
  acc.accumulate = true;
  logitkit::gemm<float>(make_view<const float>(a.data(), {2, 0}, {0, 1}), make_view<const float>(b.data(), {0, 3}, {3, 1}),
                        make_view<float>(c.data(), {2, 3}, {3, 1}), acc);
  for (float v : c) EXPECT_EQ(v, 5.0f);
  logitkit::gemm<float>(make_view<const float>(a.data(), {0, 4}, {4, 1}), make_view<const float>(b.data(), {4, 3}, {3, 1}),
                        make_view<float>(c.data(), {0, 3}, {3, 1}));
}

TEST_P(Gemm, StridedOutputAndBroadcastInput) {
  const int64_t m = 13, n = 21, k = 300;
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<float> a(static_cast<size_t>(m * k)), brow(static_cast<size_t>(n)), c(static_cast<size_t>(m * n * 2), 7.0f);
  for (float& v : a) v = float(u(rng));
  for (float& v : brow) v = float(u(rng));
  // B's rows all the same row (stride 0), C transposed and every other column
  logitkit::gemm<float>(make_view<const float>(a.data(), {m, k}, {k, 1}), make_view<const float>(brow.data(), {k, n}, {0, 1}),
                        make_view<float>(c.data(), {m, n}, {2, 2 * m}));
  for (int64_t i = 0; i < m; ++i) {
    double row_sum = 0;
    for (int64_t p = 0; p < k; ++p) row_sum += a[size_t(i * k + p)];
    for (int64_t j = 0; j < n; ++j) {
      EXPECT_NEAR(c[size_t(i * 2 + j * 2 * m)], row_sum * brow[size_t(j)], 1e-4);
      EXPECT_EQ(c[size_t(i * 2 + j * 2 * m + 1)], 7.0f);  // the columns between are untouched
    }
  }
}

TEST_P(Gemm, SameBitsForAnyThreadCount) {
  const int64_t m = 300, n = 520, k = 700;
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> a(size_t(m * k)), b(size_t(k * n)), c1(size_t(m * n)), c2(size_t(m * n));
  for (float& v : a) v = u(rng);
  for (float& v : b) v = u(rng);
  const int before = logitkit::get_num_threads();
  logitkit::set_num_threads(1);
  logitkit::gemm<float>(lktest::contiguous<const float>(a.data(), {m, k}), lktest::contiguous<const float>(b.data(), {k, n}),
                        lktest::contiguous<float>(c1.data(), {m, n}));
  logitkit::set_num_threads(3);
  logitkit::gemm<float>(lktest::contiguous<const float>(a.data(), {m, k}), lktest::contiguous<const float>(b.data(), {k, n}),
                        lktest::contiguous<float>(c2.data(), {m, n}));
  logitkit::set_num_threads(before);
  EXPECT_EQ(c1, c2);
}

TEST_P(Gemm, ErrorsNameTheArgument) {
  std::vector<float> a(12), b(12), c(12);
  auto expect_error = [](auto&& call, const std::string& argument) {
    try {
      call();
      ADD_FAILURE() << "no error for " << argument;
    } catch (const logitkit::Error& e) {
      EXPECT_EQ(e.argument(), argument) << e.what();
    }
  };
  expect_error([&] { logitkit::gemm<float>(lktest::contiguous<const float>(a.data(), {3, 4}),
                                           lktest::contiguous<const float>(b.data(), {3, 4}),
                                           lktest::contiguous<float>(c.data(), {3, 4})); }, "b");
  expect_error([&] { logitkit::gemm<float>(lktest::contiguous<const float>(a.data(), {3, 4}),
                                           lktest::contiguous<const float>(b.data(), {4, 3}),
                                           lktest::contiguous<float>(c.data(), {3, 4})); }, "c");
  expect_error([&] { logitkit::gemm<float>(lktest::contiguous<const float>(a.data(), {12}),
                                           lktest::contiguous<const float>(b.data(), {4, 3}),
                                           lktest::contiguous<float>(c.data(), {3, 3})); }, "a");
  expect_error([&] { logitkit::gemm<float>(lktest::contiguous<const float>(a.data(), {3, 2}),
                                           lktest::contiguous<const float>(b.data(), {2, 3}),
                                           lktest::contiguous<float>(a.data() + 2, {3, 3})); }, "c");
  logitkit::GemmOptions o;
  o.alpha = NAN;
  expect_error([&] { logitkit::gemm<float>(lktest::contiguous<const float>(a.data(), {3, 4}),
                                           lktest::contiguous<const float>(b.data(), {4, 3}),
                                           lktest::contiguous<float>(c.data(), {3, 3}), o); }, "alpha");
}

LKTEST_FOR_EACH_ISA(Gemm);

}  // namespace
