// The gemm micro-kernel family through logitkit::gemm on every ISA, against a float64 reference:
// every tail of the register tile (m, n around MR, NR and their multiples), K across the K-block
// boundary, transposed and strided operands, alpha, accumulate, thread invariance, and errors;
// and linear_cross_entropy, the gemm family's client, through the C++ API (its full option matrix
// is tested from Python against torch: tests/test_linear_cross_entropy.py).
#include <cmath>
#include <cstring>
#include <string>
#include <cstdint>
#include <random>
#include <vector>

#include "logitkit/gemm.h"
#include "logitkit/linear_cross_entropy.h"
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
  // (a few shapes: the reference is a triple loop, and the NEON suite runs under qemu)
  const int64_t shapes[][3] = {{97, 257, 255}, {97, 257, 257}, {193, 40, 256}, {193, 40, 600}, {97, 40, 600}};
  for (const auto& [m, n, k] : shapes)
    for (int layout = 0; layout < 4; ++layout) {
      check_shape<float>(m, n, k, layout & 1, layout & 2, layout == 3 ? -0.5 : 1.0, layout >= 2, rng);
      if (n == 40) check_shape<double>(m, n, k, layout & 1, layout & 2, 2.0, layout & 1, rng);
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
  const int64_t m = 150, n = 300, k = 400;  // several task tiles
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
  using Shape = std::vector<int64_t>;
  auto gemm = [&](const Shape& as, const Shape& bs, float* out, const Shape& cs, logitkit::GemmOptions o = {}) {
    return [&, as, bs, out, cs, o] {
      logitkit::gemm<float>(lktest::contiguous<const float>(a.data(), as), lktest::contiguous<const float>(b.data(), bs),
                            lktest::contiguous<float>(out, cs), o);
    };
  };
  lktest::expect_argument_error("b", gemm({3, 4}, {3, 4}, c.data(), {3, 4}));
  lktest::expect_argument_error("c", gemm({3, 4}, {4, 3}, c.data(), {3, 4}));
  lktest::expect_argument_error("a", gemm({12}, {4, 3}, c.data(), {3, 3}));
  lktest::expect_argument_error("c", gemm({3, 2}, {2, 3}, a.data() + 2, {3, 3}));  // overlaps a
  logitkit::GemmOptions nan_alpha;
  nan_alpha.alpha = NAN;
  lktest::expect_argument_error("alpha", gemm({3, 4}, {4, 3}, c.data(), {3, 3}, nan_alpha));
  logitkit::GemmOptions huge_alpha;  // finite in double, infinite in float (a fuzzer finding)
  huge_alpha.alpha = 1e300;
  lktest::expect_argument_error("alpha", gemm({3, 4}, {4, 3}, c.data(), {3, 3}, huge_alpha));
}

// bfloat16 operands (gemm_bf16): on the bfloat16 dot product where the ISA has one, widened to the
// float kernel elsewhere. The products of two bfloat16 values are exact in float, so both paths
// are checked against the double sum of the same values; the widened path must equal gemm<float>
// of the widened values bit for bit.
uint16_t to_bf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float from_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

void check_bf16_shape(int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b, double alpha, bool accumulate,
                      std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<uint16_t> a(size_t(m * k)), b(size_t(k * n));
  for (uint16_t& v : a) v = to_bf16(u(rng));
  for (uint16_t& v : b) v = to_bf16(u(rng));
  std::vector<float> c(size_t(m * n)), af(a.size()), bf(b.size());
  for (float& v : c) v = u(rng);
  for (size_t i = 0; i < a.size(); ++i) af[i] = from_bf16(a[i]);
  for (size_t i = 0; i < b.size(); ++i) bf[i] = from_bf16(b[i]);
  std::vector<float> widened = c;
  const std::vector<float> c0 = c;
  const int64_t ars = trans_a ? 1 : k, acs = trans_a ? m : 1;
  const int64_t brs = trans_b ? 1 : n, bcs = trans_b ? k : 1;
  logitkit::GemmOptions o;
  o.alpha = alpha;
  o.accumulate = accumulate;
  logitkit::gemm_bf16(make_view<const uint16_t>(a.data(), {m, k}, {ars, acs}),
                      make_view<const uint16_t>(b.data(), {k, n}, {brs, bcs}), make_view<float>(c.data(), {m, n}, {n, 1}),
                      o);
  const std::vector<double> want = reference(af, ars, acs, bf, brs, bcs, c0, m, n, k, alpha, accumulate);
  const double tol = 2e-6 * double(k + 2) * (std::fabs(alpha) + 1);
  for (int64_t i = 0; i < m * n; ++i)
    ASSERT_NEAR(double(c[size_t(i)]), want[size_t(i)], tol)
        << "m=" << m << " n=" << n << " k=" << k << " ta=" << trans_a << " tb=" << trans_b << " at " << i;
  if (std::string(logitkit::isa()) != "avx512bf16") {  // no bfloat16 dot product: the float kernel, widened
    logitkit::gemm<float>(make_view<const float>(af.data(), {m, k}, {ars, acs}),
                          make_view<const float>(bf.data(), {k, n}, {brs, bcs}),
                          make_view<float>(widened.data(), {m, n}, {n, 1}), o);
    ASSERT_EQ(c, widened) << "m=" << m << " n=" << n << " k=" << k;
  }
}

TEST_P(Gemm, Bf16EveryTailAndBlock) {
  std::mt19937 rng(5);
  for (int64_t m : {1, 5, 12, 13, 25})
    for (int64_t n : {1, 7, 16, 31, 32, 33, 65})
      for (int64_t k : {1, 2, 3, 8}) check_bf16_shape(m, n, k, (m + n) % 2 == 1, k % 2 == 1, 1.0, false, rng);
  // odd and even K across the K block, partial row panels after whole ones, both layouts of each
  const int64_t shapes[][3] = {{97, 40, 255}, {97, 40, 257}, {30, 70, 600}, {193, 33, 513}, {13, 300, 1023}};
  for (const auto& [m, n, k] : shapes)
    for (int layout = 0; layout < 4; ++layout)
      check_bf16_shape(m, n, k, layout & 1, layout & 2, layout == 3 ? -0.5 : 1.0, layout >= 2, rng);
}

TEST_P(Gemm, Bf16SameBitsForAnyThreadCountAndErrors) {
  const int64_t m = 150, n = 300, k = 401;
  std::mt19937 rng(6);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<uint16_t> a(size_t(m * k)), b(size_t(k * n));
  for (uint16_t& v : a) v = to_bf16(u(rng));
  for (uint16_t& v : b) v = to_bf16(u(rng));
  std::vector<float> c1(size_t(m * n)), c2(size_t(m * n));
  const int before = logitkit::get_num_threads();
  logitkit::set_num_threads(1);
  logitkit::gemm_bf16(lktest::contiguous<const uint16_t>(a.data(), {m, k}),
                      lktest::contiguous<const uint16_t>(b.data(), {k, n}), lktest::contiguous<float>(c1.data(), {m, n}));
  logitkit::set_num_threads(3);
  logitkit::gemm_bf16(lktest::contiguous<const uint16_t>(a.data(), {m, k}),
                      lktest::contiguous<const uint16_t>(b.data(), {k, n}), lktest::contiguous<float>(c2.data(), {m, n}));
  logitkit::set_num_threads(before);
  EXPECT_EQ(c1, c2);
  lktest::expect_argument_error("b", [&] {
    logitkit::gemm_bf16(lktest::contiguous<const uint16_t>(a.data(), {m, k}),
                        lktest::contiguous<const uint16_t>(b.data(), {k + 1, 1}), lktest::contiguous<float>(c1.data(), {m, 1}));
  });
  lktest::expect_argument_error("c", [&] {
    logitkit::gemm_bf16(lktest::contiguous<const uint16_t>(a.data(), {m, k}),
                        lktest::contiguous<const uint16_t>(b.data(), {k, n}), lktest::contiguous<float>(c1.data(), {m, n + 1}));
  });
}

LKTEST_FOR_EACH_ISA(Gemm);

class LinearCrossEntropy : public lktest::IsaTest {};

// Loss and gradients of mean cross-entropy of x w^T + b in double, from the definition.
struct LceReference {
  double loss = 0;
  std::vector<double> dx, dw, db;
};
LceReference lce_reference(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                           const std::vector<int64_t>& t, int64_t n, int64_t d, int64_t v) {
  LceReference r;
  r.dx.assign(size_t(n * d), 0.0);
  r.dw.assign(size_t(v * d), 0.0);
  r.db.assign(size_t(v), 0.0);
  int64_t counted = 0;
  for (int64_t i = 0; i < n; ++i) counted += t[size_t(i)] >= 0;
  std::vector<double> z(static_cast<size_t>(v));
  for (int64_t i = 0; i < n; ++i) {
    if (t[size_t(i)] < 0) continue;
    double m = -INFINITY;
    for (int64_t c = 0; c < v; ++c) {
      double s = b[size_t(c)];
      for (int64_t k = 0; k < d; ++k) s += double(x[size_t(i * d + k)]) * double(w[size_t(c * d + k)]);
      z[size_t(c)] = s;
      m = std::max(m, s);
    }
    double sum = 0;
    for (int64_t c = 0; c < v; ++c) sum += std::exp(z[size_t(c)] - m);
    const double lse = m + std::log(sum);
    r.loss += (lse - z[size_t(t[size_t(i)])]) / double(counted);
    for (int64_t c = 0; c < v; ++c) {
      const double g = (std::exp(z[size_t(c)] - lse) - (c == t[size_t(i)] ? 1.0 : 0.0)) / double(counted);
      r.db[size_t(c)] += g;
      for (int64_t k = 0; k < d; ++k) {
        r.dx[size_t(i * d + k)] += g * double(w[size_t(c * d + k)]);
        r.dw[size_t(c * d + k)] += g * double(x[size_t(i * d + k)]);
      }
    }
  }
  return r;
}

TEST_P(LinearCrossEntropy, LossAndGradientsOnCallerBuffers) {
  const int64_t n = 45, d = 13, v = 300;  // several chunks of 8 rows, V past a 256-entry block
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0, 1);
  std::vector<float> x(static_cast<size_t>(n * d)), w(static_cast<size_t>(v * d)), b(static_cast<size_t>(v));
  for (float& e : x) e = g(rng);
  for (float& e : w) e = 0.3f * g(rng);
  for (float& e : b) e = g(rng);
  std::vector<int64_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = i % 7 == 3 ? -100 : int64_t(rng() % uint32_t(v));
  const LceReference want = lce_reference(x, w, b, t, n, d, v);
  // gradients start as garbage (overwritten), then as the first result (accumulated)
  std::vector<float> dx(size_t(n * d), 9.0f), dw(size_t(v * d), 9.0f), db(size_t(v), 9.0f);
  logitkit::LinearCrossEntropyGrads<float> grads;
  grads.input = lktest::contiguous<float>(dx.data(), {n, d});
  grads.linear_weight = lktest::contiguous<float>(dw.data(), {v, d});
  grads.linear_bias = lktest::contiguous<float>(db.data(), {v});
  logitkit::LinearCrossEntropyOptions o;
  o.chunk_rows = 8;
  auto call = [&] {
    return logitkit::linear_cross_entropy<float, int64_t>(
        lktest::contiguous<const float>(x.data(), {n, d}), lktest::contiguous<const float>(w.data(), {v, d}),
        lktest::contiguous<const int64_t>(t.data(), {n}), lktest::contiguous<const float>(b.data(), {v}), {}, o, {}, {},
        grads);
  };
  const double loss = call();
  EXPECT_NEAR(loss, want.loss, 1e-5 * std::fabs(want.loss));
  for (size_t i = 0; i < dx.size(); ++i) ASSERT_NEAR(dx[i], want.dx[i], 2e-6) << "d_input " << i;
  for (size_t i = 0; i < dw.size(); ++i) ASSERT_NEAR(dw[i], want.dw[i], 2e-6) << "d_linear_weight " << i;
  for (size_t i = 0; i < db.size(); ++i) ASSERT_NEAR(db[i], want.db[i], 2e-6) << "d_linear_bias " << i;
  o.accumulate = true;
  call();
  for (size_t i = 0; i < dw.size(); ++i) ASSERT_NEAR(dw[i], 2 * want.dw[i], 4e-6) << "accumulated " << i;
}

TEST_P(LinearCrossEntropy, ErrorsNameTheArgument) {
  std::vector<float> x(12), w(12), dx(12);
  std::vector<int64_t> t = {0, 1, 5};
  auto lce = [&](int64_t w_cols, const logitkit::LinearCrossEntropyGrads<float>& g) {
    return logitkit::linear_cross_entropy<float, int64_t>(
        lktest::contiguous<const float>(x.data(), {3, 4}), lktest::contiguous<const float>(w.data(), {12 / w_cols, w_cols}),
        lktest::contiguous<const int64_t>(t.data(), {3}), {}, {}, {}, {}, {}, g);
  };
  lktest::expect_argument_error("linear_weight", [&] { lce(3, {}); });
  lktest::expect_argument_error("target", [&] { lce(4, {}); });  // class 5 of 3
  t[2] = 2;
  logitkit::LinearCrossEntropyGrads<float> g;
  g.input = lktest::contiguous<float>(x.data(), {3, 4});  // the input itself
  lktest::expect_argument_error("d_input", [&] { lce(4, g); });
  g.input = lktest::contiguous<float>(dx.data(), {4, 3});
  lktest::expect_argument_error("d_input", [&] { lce(4, g); });
  g.input = lktest::make_view<float>(dx.data(), {3, 4}, {0, 1});  // a broadcast output
  lktest::expect_argument_error("d_input", [&] { lce(4, g); });
  g.input = {};
  std::vector<float> class_weight(2, 1.0f);  // 2 weights for 3 classes
  logitkit::LossWeights<float> weights;
  weights.weight = lktest::contiguous<const float>(class_weight.data(), {2});
  lktest::expect_argument_error("weight", [&] {
    logitkit::linear_cross_entropy<float, int64_t>(
        lktest::contiguous<const float>(x.data(), {3, 4}), lktest::contiguous<const float>(w.data(), {3, 4}),
        lktest::contiguous<const int64_t>(t.data(), {3}), {}, {}, {}, weights);
  });
  logitkit::LinearCrossEntropyOptions bf16_gradient;  // for bfloat16 operands only
  bf16_gradient.bfloat16_gradient = true;
  lktest::expect_argument_error("bfloat16_gradient", [&] {
    logitkit::linear_cross_entropy<float, int64_t>(
        lktest::contiguous<const float>(x.data(), {3, 4}), lktest::contiguous<const float>(w.data(), {3, 4}),
        lktest::contiguous<const int64_t>(t.data(), {3}), {}, {}, bf16_gradient);
  });
}

LKTEST_FOR_EACH_ISA(LinearCrossEntropy);

}  // namespace
