// stablemax through the public C++ API, on every ISA, against float64 math written here from the
// definitions, with entropy on the same rows (one test, StablemaxAndEntropy, as it was before the
// files were split per family). The Python suite covers layouts and dtypes in depth; this file
// checks that C++ callers get the same numbers and the same errors.
#include <cmath>
#include <vector>

#include "test_util.h"

namespace {

using namespace lktest::family;

template <class T>
void check_stablemax_and_entropy(FamilyTest<T>& f) {
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

TEST_P(FamilyF32, StablemaxAndEntropy) { check_stablemax_and_entropy(*this); }
TEST_P(FamilyF64, StablemaxAndEntropy) { check_stablemax_and_entropy(*this); }

LKTEST_FOR_EACH_ISA(FamilyF32);
LKTEST_FOR_EACH_ISA(FamilyF64);

}  // namespace
