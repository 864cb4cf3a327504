// collapse_fraction through the public C++ API, on every ISA (entropy's values are checked with
// stablemax's in test_stablemax.cc). The Python suite covers layouts and dtypes in depth; this
// file checks that C++ callers get the same numbers and the same errors.
#include <vector>

#include "test_util.h"

namespace {

using namespace lktest::family;

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

}  // namespace
