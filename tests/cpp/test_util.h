// Shared helpers of the C++ tests: the run-once-per-ISA fixture and float64 reference math.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "logitkit/logitkit.h"

namespace lktest {

// Base fixture: the test body runs with backend GetParam() active; the previous one is restored.
class IsaTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    previous_ = logitkit::isa();
    logitkit::set_isa(GetParam());
  }
  void TearDown() override { logitkit::set_isa(previous_); }

 private:
  std::string previous_;
};

inline std::string isa_param_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

// Instantiates a TEST_P suite once for every backend this CPU runs (scalar, avx2, avx512 / neon).
#define LKTEST_FOR_EACH_ISA(Suite)                                                          \
  INSTANTIATE_TEST_SUITE_P(Isa, Suite, ::testing::ValuesIn(logitkit::available_isas()), \
                           lktest::isa_param_name)

// C-order element strides of `shape`.
inline std::vector<int64_t> c_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t s = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    strides[d] = s;
    s *= shape[d];
  }
  return strides;
}

// A view over caller memory with the given shape and element strides.
template <class T>
logitkit::ArrayView<T> make_view(T* data, const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) {
  logitkit::ArrayView<T> v;
  v.data = data;
  v.ndim = static_cast<int>(shape.size());
  for (int d = 0; d < v.ndim; ++d) {
    v.shape[d] = shape[d];
    v.strides[d] = strides[d];
  }
  return v;
}

template <class T>
logitkit::ArrayView<T> contiguous(T* data, const std::vector<int64_t>& shape) {
  return make_view(data, shape, c_strides(shape));
}

inline const logitkit::SoftmaxAlgorithm kAllAlgorithms[] = {
    logitkit::SoftmaxAlgorithm::kAuto, logitkit::SoftmaxAlgorithm::kThreePassReload,
    logitkit::SoftmaxAlgorithm::kThreePassRecompute, logitkit::SoftmaxAlgorithm::kTwoPass,
    logitkit::SoftmaxAlgorithm::kOnline};

inline const char* algorithm_name(logitkit::SoftmaxAlgorithm a) {
  switch (a) {
    case logitkit::SoftmaxAlgorithm::kAuto: return "auto";
    case logitkit::SoftmaxAlgorithm::kThreePassReload: return "three_pass_reload";
    case logitkit::SoftmaxAlgorithm::kThreePassRecompute: return "three_pass_recompute";
    case logitkit::SoftmaxAlgorithm::kTwoPass: return "two_pass";
    case logitkit::SoftmaxAlgorithm::kOnline: return "online";
  }
  return "?";
}

// Machine epsilon of T (the ulp of 1).
template <class T>
constexpr double eps() {
  return std::numeric_limits<T>::epsilon();
}

// Normal samples of scale `sigma` around `mean`, rounded to T.
template <class T>
std::vector<T> randn(size_t n, uint64_t seed, double sigma = 3.0, double mean = 0.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(mean, sigma);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

// Float64 references over one row of exact T values (`stride` apart), with c = 1 / temperature.
struct RowRef {
  double max = -std::numeric_limits<double>::infinity();
  double lse = 0;  // log(sum exp(c (x - max)))
};
template <class T>
RowRef row_ref(const T* x, int64_t n, int64_t stride, double c) {
  RowRef r;
  for (int64_t i = 0; i < n; ++i) r.max = std::max(r.max, double(x[i * stride]));
  // Compensated (Neumaier) summation: a plain double sum of 2^18 terms is off by ~1e-13, more than
  // the float64 kernels' own error.
  double s = 0, comp = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double t = std::exp(c * (double(x[i * stride]) - r.max));
    const double u = s + t;
    comp += std::fabs(s) >= std::fabs(t) ? (s - u) + t : (t - u) + s;
    s = u;
  }
  r.lse = std::log(s + comp);
  return r;
}

// Tolerances, in units of T's epsilon. A float sum over a 512-element block accumulates a few tens
// of rounding errors on some lanes; rounding x - max (and the product by 1/temperature) perturbs
// exp's argument by about |c (x - max)| ulp, which the `arg` term allows.
inline constexpr double kSumUlps = 32;

// |y - ref| allowed for softmax output ref whose argument was a = c (x - max) <= 0.
template <class T>
double softmax_tol(double ref, double a) {
  return eps<T>() * (kSumUlps + 2 * std::fabs(a)) * ref + 4 * double(std::numeric_limits<T>::denorm_min());
}
// |y - ref| allowed for log_softmax (and logsumexp) output ref with argument a.
template <class T>
double log_tol(double ref, double a) {
  return eps<T>() * (kSumUlps + 2 * std::fabs(a) + 2 * std::fabs(ref));
}

// Reads an integer test parameter from the environment (set by ctest for slow emulated runs).
inline uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 10);
}

// The per-family tests (test_<family>.cc) on one small matrix: kRows x kCols logits of scale 2,
// against float64 math written from the definitions. A file brings these in with
// `using namespace lktest::family;` and runs its TEST_P(FamilyF32 / FamilyF64, ...) on every ISA
// with LKTEST_FOR_EACH_ISA.
namespace family {

using logitkit::ArrayView;
using logitkit::Error;

inline constexpr int64_t kRows = 6, kCols = 37;  // 37: full vectors and a tail on every ISA
inline constexpr double kInf = std::numeric_limits<double>::infinity();

template <class T>
ArrayView<T> matrix(T* data) {
  return ArrayView<T>::contiguous(data, {kRows, kCols});
}

// Tolerance for a float computation of a value of size ~1 whose inputs are |x| <= ~10.
template <class T>
double tol() {
  return 64 * eps<T>();
}

// Reference softmax of one row over the included positions (all when mask is null).
inline std::vector<double> ref_softmax(const double* x, const uint8_t* mask, int64_t n) {
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

template <class T>
std::vector<double> widen(const T* p, int64_t n) {
  return std::vector<double>(p, p + n);
}

template <class T>
class FamilyTest : public IsaTest {
 public:
  std::vector<T> x = randn<T>(kRows * kCols, 7, 2.0);
  std::vector<T> y = std::vector<T>(kRows * kCols);
  const T* row(const std::vector<T>& v, int64_t r) { return v.data() + r * kCols; }
};

// A named type per dtype keeps the TEST_P bodies short.
class FamilyF32 : public FamilyTest<float> {};
class FamilyF64 : public FamilyTest<double> {};

}  // namespace family
// Expects call() to throw a logitkit::Error naming `argument`.
template <class F>
void expect_argument_error(const std::string& argument, F&& call) {
  try {
    call();
    ADD_FAILURE() << "no error for " << argument;
  } catch (const logitkit::Error& e) {
    EXPECT_EQ(e.argument(), argument) << e.what();
  }
}

}  // namespace lktest
