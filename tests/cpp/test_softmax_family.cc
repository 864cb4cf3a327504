// The rest of the softmax family through the public C++ API (masked softmax, backward passes,
// StableMax, entropy, collapse_fraction, sparsemax, entmax), on every ISA, against float64 math
// written here from the definitions. The Python suite covers layouts and dtypes in depth; this file
// checks that C++ callers get the same numbers and the same errors.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "test_util.h"

namespace {

using logitkit::ArrayView;
using logitkit::Error;

constexpr int64_t kRows = 6, kCols = 37;  // 37: full vectors and a tail on every ISA
constexpr double kInf = std::numeric_limits<double>::infinity();

template <class T>
ArrayView<T> matrix(T* data) {
  return ArrayView<T>::contiguous(data, {kRows, kCols});
}

// Tolerance for a float computation of a value of size ~1 whose inputs are |x| <= ~10.
template <class T>
double tol() {
  return 64 * lktest::eps<T>();
}

template <class T>
class SoftmaxFamily : public lktest::IsaTest {
 public:
  std::vector<T> x = lktest::randn<T>(kRows * kCols, 7, 2.0);
  std::vector<T> y = std::vector<T>(kRows * kCols);
  const T* row(const std::vector<T>& v, int64_t r) { return v.data() + r * kCols; }
};

// A named type per dtype keeps the TEST_P bodies short.
class FamilyF32 : public SoftmaxFamily<float> {};
class FamilyF64 : public SoftmaxFamily<double> {};

// Reference softmax of one row over the included positions (all when mask is null).
std::vector<double> ref_softmax(const double* x, const uint8_t* mask, int64_t n) {
  double m = -kInf;
  for (int64_t i = 0; i < n; ++i)
    if (!mask || mask[i]) m = std::max(m, x[i]);
  std::vector<double> p(n, 0.0);
  double s = 0;
  for (int64_t i = 0; i < n; ++i)
    if (!mask || mask[i]) s += (p[i] = std::exp(x[i] - m));
  for (auto& v : p) v = s > 0 ? v / s : 0.0;
  return p;
}

// tau of sparsemax (sum max(x - tau, 0) = 1) by the sort-based closed form.
double ref_sparsemax_tau(std::vector<double> z) {
  std::sort(z.begin(), z.end(), std::greater<double>());
  double cum = 0, tau = 0;
  for (size_t k = 0; k < z.size(); ++k) {
    cum += z[k];
    const double t = (cum - 1) / double(k + 1);
    if (z[k] > t) tau = t;
  }
  return tau;
}

// tau of entmax-1.5 (sum max(x/2 - tau, 0)^2 = 1) by bisection to double precision.
double ref_entmax15_tau(const std::vector<double>& x) {
  double hi = *std::max_element(x.begin(), x.end()) / 2, lo = hi - 1;
  for (int it = 0; it < 200; ++it) {
    const double mid = 0.5 * (lo + hi);
    double s = 0;
    for (double v : x) s += std::pow(std::max(v / 2 - mid, 0.0), 2);
    (s > 1 ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

template <class T>
std::vector<double> widen(const T* p, int64_t n) {
  return std::vector<double>(p, p + n);
}

template <class T>
void check_masked(SoftmaxFamily<T>& f) {
  std::vector<uint8_t> mask(kRows * kCols);
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = (i * 7 + i / 5) % 3 != 0;
  for (int64_t j = 0; j < kCols; ++j) mask[2 * kCols + j] = 0;  // row 2: nothing included
  auto mv = ArrayView<const uint8_t>::contiguous(mask.data(), {kRows, kCols});
  logitkit::masked_softmax<T>(matrix<const T>(f.x.data()), mv, matrix<T>(f.y.data()), -1);
  std::vector<T> ly(kRows * kCols);
  logitkit::masked_log_softmax<T>(matrix<const T>(f.x.data()), mv, matrix<T>(ly.data()), -1);
  for (int64_t r = 0; r < kRows; ++r) {
    auto p = ref_softmax(widen(f.row(f.x, r), kCols).data(), mask.data() + r * kCols, kCols);
    for (int64_t j = 0; j < kCols; ++j) {
      EXPECT_NEAR(f.y[r * kCols + j], p[j], tol<T>() * std::max(p[j], 1e-3)) << r << "," << j;
      if (p[j] > 0) EXPECT_NEAR(ly[r * kCols + j], std::log(p[j]), tol<T>() * 8) << r << "," << j;
      else EXPECT_EQ(ly[r * kCols + j], -kInf) << r << "," << j;
    }
  }
  // A mask whose shape does not match is an error naming it.
  auto bad = ArrayView<const uint8_t>::contiguous(mask.data(), {kRows, kCols - 1});
  try {
    logitkit::masked_softmax<T>(matrix<const T>(f.x.data()), bad, matrix<T>(f.y.data()), -1);
    ADD_FAILURE() << "no error for a mask of the wrong shape";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "mask");
  }
}

template <class T>
void check_backward(SoftmaxFamily<T>& f) {
  std::vector<T> dy = lktest::randn<T>(kRows * kCols, 9, 1.0), dx(kRows * kCols), ly(kRows * kCols);
  logitkit::SoftmaxOptions opt;
  opt.temperature = 0.5;
  for (int64_t r = 0; r < kRows; ++r) {
    auto p = ref_softmax(widen(f.row(f.x, r), kCols).data(), nullptr, kCols);
    for (int64_t j = 0; j < kCols; ++j) {
      f.y[r * kCols + j] = T(p[j]);
      ly[r * kCols + j] = T(std::log(p[j]));
    }
  }
  logitkit::softmax_backward<T>(matrix<const T>(f.y.data()), matrix<const T>(dy.data()), matrix<T>(dx.data()), -1,
                                opt);
  for (int64_t r = 0; r < kRows; ++r) {
    double s = 0;
    for (int64_t j = 0; j < kCols; ++j) s += double(f.y[r * kCols + j]) * dy[r * kCols + j];
    for (int64_t j = 0; j < kCols; ++j) {
      const double ref = 2.0 * f.y[r * kCols + j] * (dy[r * kCols + j] - s);
      EXPECT_NEAR(dx[r * kCols + j], ref, tol<T>() * 4) << r << "," << j;
    }
  }
  logitkit::log_softmax_backward<T>(matrix<const T>(ly.data()), matrix<const T>(dy.data()), matrix<T>(dx.data()),
                                    -1, opt);
  for (int64_t r = 0; r < kRows; ++r) {
    double s = 0;
    for (int64_t j = 0; j < kCols; ++j) s += dy[r * kCols + j];
    for (int64_t j = 0; j < kCols; ++j) {
      const double ref = 2.0 * (dy[r * kCols + j] - std::exp(double(ly[r * kCols + j])) * s);
      EXPECT_NEAR(dx[r * kCols + j], ref, tol<T>() * 8 * (1 + std::fabs(s))) << r << "," << j;
    }
  }
  auto short_dy = ArrayView<const T>::contiguous(dy.data(), {kRows, kCols - 1});
  try {
    logitkit::softmax_backward<T>(matrix<const T>(f.y.data()), short_dy, matrix<T>(dx.data()), -1);
    ADD_FAILURE() << "no error for dy of the wrong shape";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "dy");
  }
}

template <class T>
void check_stablemax_and_entropy(SoftmaxFamily<T>& f) {
  logitkit::stablemax<T>(matrix<const T>(f.x.data()), matrix<T>(f.y.data()), -1);
  std::vector<T> h(kRows);
  logitkit::entropy<T>(matrix<const T>(f.x.data()), ArrayView<T>::contiguous(h.data(), {kRows}), -1);
  for (int64_t r = 0; r < kRows; ++r) {
    const T* x = f.row(f.x, r);
    double total = 0;
    std::vector<double> s(kCols);
    for (int64_t j = 0; j < kCols; ++j) total += (s[j] = x[j] >= 0 ? x[j] + 1.0 : 1.0 / (1.0 - x[j]));
    for (int64_t j = 0; j < kCols; ++j)
      EXPECT_NEAR(f.y[r * kCols + j], s[j] / total, tol<T>() * (s[j] / total)) << r << "," << j;
    auto p = ref_softmax(widen(x, kCols).data(), nullptr, kCols);
    double ent = 0;
    for (double v : p) ent -= v > 0 ? v * std::log(v) : 0.0;
    EXPECT_NEAR(h[r], ent, tol<T>() * 8) << r;
  }
  logitkit::StablemaxOptions bad;
  bad.temperature = 0;
  try {
    logitkit::stablemax<T>(matrix<const T>(f.x.data()), matrix<T>(f.y.data()), -1, bad);
    ADD_FAILURE() << "no error for temperature 0";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "temperature");
  }
}

template <class T>
void check_sparse(SoftmaxFamily<T>& f) {
  std::vector<T> e(kRows * kCols), b(kRows * kCols);
  logitkit::sparsemax<T>(matrix<const T>(f.x.data()), matrix<T>(f.y.data()), -1);
  logitkit::entmax15<T>(matrix<const T>(f.x.data()), matrix<T>(e.data()), -1);
  logitkit::EntmaxBisectOptions bis;  // alpha 1.5: the same map as entmax15
  bis.n_iter = 60;
  logitkit::entmax_bisect<T>(matrix<const T>(f.x.data()), matrix<T>(b.data()), -1, bis);
  for (int64_t r = 0; r < kRows; ++r) {
    auto z = widen(f.row(f.x, r), kCols);
    const double tau = ref_sparsemax_tau(z), tau15 = ref_entmax15_tau(z);
    for (int64_t j = 0; j < kCols; ++j) {
      const double sp = std::max(z[j] - tau, 0.0), en = std::pow(std::max(z[j] / 2 - tau15, 0.0), 2);
      EXPECT_NEAR(f.y[r * kCols + j], sp, tol<T>() * 4) << r << "," << j;
      if (sp == 0 && std::fabs(z[j] - tau) > 1e-3) {
        EXPECT_EQ(f.y[r * kCols + j], T(0)) << "exact zero off the support";
      }
      EXPECT_NEAR(e[r * kCols + j], en, tol<T>() * 4) << r << "," << j;
      EXPECT_NEAR(b[r * kCols + j], en, tol<T>() * 16) << r << "," << j;
    }
  }
  // sparsemax_backward: dy minus its mean over the support, 0 elsewhere.
  std::vector<T> dy = lktest::randn<T>(kRows * kCols, 13, 1.0), dx(kRows * kCols);
  logitkit::sparsemax_backward<T>(matrix<const T>(f.y.data()), matrix<const T>(dy.data()), matrix<T>(dx.data()), -1);
  for (int64_t r = 0; r < kRows; ++r) {
    double s = 0;
    int k = 0;
    for (int64_t j = 0; j < kCols; ++j)
      if (f.y[r * kCols + j] > 0) s += dy[r * kCols + j], ++k;
    for (int64_t j = 0; j < kCols; ++j) {
      const double ref = f.y[r * kCols + j] > 0 ? dy[r * kCols + j] - s / k : 0.0;
      EXPECT_NEAR(dx[r * kCols + j], ref, tol<T>() * 4) << r << "," << j;
    }
  }
  // alpha below 1, and (for float) finite in double but not once rounded to float.
  for (double alpha : {0.5, 0.9999999, sizeof(T) == 4 ? 1e39 : -1.0}) {
    bis.alpha = alpha;
    try {
      logitkit::entmax_bisect<T>(matrix<const T>(f.x.data()), matrix<T>(b.data()), -1, bis);
      ADD_FAILURE() << "no error for alpha " << alpha;
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), "alpha");
      EXPECT_EQ(std::string(e.what()).find("0.000000"), std::string::npos) << e.what();  // the value, not %f
    }
  }
}

// Every op with an input that partly overlaps its output (the output one element past x, or
// logits read backwards over it) gives the out-of-place result: the input is read from a copy.
template <class T>
void check_partial_overlap(SoftmaxFamily<T>& f) {
  const size_t size = kRows * kCols;
  std::vector<uint8_t> mask(size);
  for (size_t i = 0; i < size; ++i) mask[i] = (i * 7) % 5 != 0;
  const auto mv = ArrayView<const uint8_t>::contiguous(mask.data(), {kRows, kCols});
  auto dy = lktest::randn<T>(size, 11, 1.0);
  using Op = std::function<void(ArrayView<const T>, ArrayView<T>)>;  // in -> out, both kRows x kCols
  const std::vector<std::pair<std::string, Op>> ops = {
      {"masked_softmax", [&](auto in, auto out) { logitkit::masked_softmax<T>(in, mv, out, -1); }},
      {"softmax_backward", [&](auto in, auto out) { logitkit::softmax_backward<T>(in, matrix<const T>(dy.data()), out, -1); }},
      {"sparsemax", [&](auto in, auto out) { logitkit::sparsemax<T>(in, out, -1); }},
      {"stablemax", [&](auto in, auto out) { logitkit::stablemax<T>(in, out, -1); }},
      {"log_stablemax_backward", [&](auto in, auto out) { logitkit::log_stablemax_backward<T>(in, matrix<const T>(dy.data()), out, -1); }},
  };
  std::vector<T> buf(size + 1), expected(size);
  for (const auto& [name, op] : ops) {
    op(matrix<const T>(f.x.data()), matrix<T>(expected.data()));
    std::copy(f.x.begin(), f.x.end(), buf.begin());
    op(matrix<const T>(buf.data()), matrix<T>(buf.data() + 1));
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), buf.begin() + 1)) << name;
  }
  std::vector<T> h(kRows);  // entropy's out over the start of x
  logitkit::entropy<T>(matrix<const T>(f.x.data()), ArrayView<T>::contiguous(h.data(), {kRows}), -1);
  std::copy(f.x.begin(), f.x.end(), buf.begin());
  logitkit::entropy<T>(matrix<const T>(buf.data()), ArrayView<T>::contiguous(buf.data() + 3, {kRows}), -1);
  EXPECT_TRUE(std::equal(h.begin(), h.end(), buf.begin() + 3)) << "entropy";
}

TEST_P(FamilyF32, PartialOverlap) { check_partial_overlap(*this); }
TEST_P(FamilyF64, PartialOverlap) { check_partial_overlap(*this); }
TEST_P(FamilyF32, MaskedSoftmax) { check_masked(*this); }
TEST_P(FamilyF64, MaskedSoftmax) { check_masked(*this); }
TEST_P(FamilyF32, Backward) { check_backward(*this); }
TEST_P(FamilyF64, Backward) { check_backward(*this); }
TEST_P(FamilyF32, StablemaxAndEntropy) { check_stablemax_and_entropy(*this); }
TEST_P(FamilyF64, StablemaxAndEntropy) { check_stablemax_and_entropy(*this); }
TEST_P(FamilyF32, SparsemaxEntmax) { check_sparse(*this); }
TEST_P(FamilyF64, SparsemaxEntmax) { check_sparse(*this); }

// collapse_fraction: [0, -200] collapses in float32 (exp(-200) < 2^-24), [0, -1] does not.
TEST_P(FamilyF32, CollapseFraction) {
  std::vector<float> rows = {0.f, -200.f, 0.f, -1.f, 5.f, -300.f, 1.f, 1.f};
  auto v = ArrayView<const float>::contiguous(rows.data(), {4, 2});
  EXPECT_DOUBLE_EQ(logitkit::collapse_fraction<float>(v, -1, logitkit::CollapseDtype::kFloat32), 0.5);
  try {
    logitkit::collapse_fraction<float>(v, -1, static_cast<logitkit::CollapseDtype>(77));
    ADD_FAILURE() << "no error for an out-of-range CollapseDtype";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "dtype");
  }
}

LKTEST_FOR_EACH_ISA(FamilyF32);
LKTEST_FOR_EACH_ISA(FamilyF64);

}  // namespace
