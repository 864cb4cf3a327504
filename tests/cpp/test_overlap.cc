// Inputs that partly overlap their outputs, for an op of each family (masked_softmax,
// softmax_backward, sparsemax, stablemax, log_stablemax_backward, entropy) through the public C++
// API, on every ISA: the result must equal the out-of-place one.
#include <algorithm>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "test_util.h"

namespace {

using namespace lktest::family;

// Every op with an input that partly overlaps its output (the output one element past x, or
// logits read backwards over it) gives the out-of-place result: the input is read from a copy.
template <class T>
void check_partial_overlap(FamilyTest<T>& f) {
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

LKTEST_FOR_EACH_ISA(FamilyF32);
LKTEST_FOR_EACH_ISA(FamilyF64);

// An output whose rows overlap each other (strides that revisit elements) would get two results
// in one element: refused, naming the output. Transposed and reversed outputs stay accepted.
TEST(OutputViews, SelfOverlappingOutputIsRefused) {
  std::vector<float> x(20, 1.0f), y(40, 0.0f);
  const auto xv = logitkit::ArrayView<const float>::contiguous(x.data(), {4, 5});
  auto strided = [&](int64_t s0, int64_t s1, float* base) {
    logitkit::ArrayView<float> v;
    v.data = base;
    v.ndim = 2;
    v.shape[0] = 4, v.shape[1] = 5;
    v.strides[0] = s0, v.strides[1] = s1;
    return v;
  };
  for (const auto& s : {std::pair<int64_t, int64_t>{1, 1}, {4, 1}, {2, 1}, {1, 3}})
    lktest::expect_argument_error("y", [&] { logitkit::softmax(xv, strided(s.first, s.second, y.data()), -1); });
  logitkit::softmax(xv, strided(1, 4, y.data()), -1);           // transposed: one element per result
  logitkit::softmax(xv, strided(-5, 1, y.data() + 15), -1);     // rows reversed
  logitkit::softmax(xv, strided(8, 1, y.data()), -1);           // padded rows
  EXPECT_FLOAT_EQ(y[0], 0.2f);
}

}  // namespace
