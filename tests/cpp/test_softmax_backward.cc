// softmax_backward and log_softmax_backward through the public C++ API, on every ISA, against
// float64 math written here from the definitions.
// The Python suite covers layouts and dtypes in depth; this file checks that C++ callers get the
// same numbers and the same errors.
#include <cmath>
#include <vector>

#include "test_util.h"

namespace {

using namespace lktest::family;

template <class T>
void check_backward(FamilyTest<T>& f) {
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

TEST_P(FamilyF32, Backward) { check_backward(*this); }
TEST_P(FamilyF64, Backward) { check_backward(*this); }

LKTEST_FOR_EACH_ISA(FamilyF32);
LKTEST_FOR_EACH_ISA(FamilyF64);

}  // namespace
