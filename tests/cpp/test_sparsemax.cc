// sparsemax, entmax15, entmax_bisect and sparsemax_backward through the public C++ API, on every
// ISA, against float64 math written here from the definitions.
// The Python suite covers layouts and dtypes in depth; this file checks that C++ callers get the
// same numbers and the same errors.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using namespace lktest::family;

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
void check_sparse(FamilyTest<T>& f) {
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

TEST_P(FamilyF32, SparsemaxEntmax) { check_sparse(*this); }
TEST_P(FamilyF64, SparsemaxEntmax) { check_sparse(*this); }

LKTEST_FOR_EACH_ISA(FamilyF32);
LKTEST_FOR_EACH_ISA(FamilyF64);

}  // namespace
