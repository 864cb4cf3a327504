// masked_softmax and masked_log_softmax through the public C++ API, on every ISA, against float64
// math written here from the definitions.
// The Python suite covers layouts and dtypes in depth; this file checks that C++ callers get the
// same numbers and the same errors.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "test_util.h"

namespace {

using namespace lktest::family;

template <class T>
void check_masked(FamilyTest<T>& f) {
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

TEST_P(FamilyF32, MaskedSoftmax) { check_masked(*this); }
TEST_P(FamilyF64, MaskedSoftmax) { check_masked(*this); }

LKTEST_FOR_EACH_ISA(FamilyF32);
LKTEST_FOR_EACH_ISA(FamilyF64);

}  // namespace
