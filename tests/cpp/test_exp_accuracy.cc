// Accuracy of the vector exp (logitkit::vexp) on every ISA: float32 over the whole input range
// (every Nth bit pattern, plus every pattern near the overflow and denormal boundaries) and float64
// on a dense sample, against exp computed in a wider type.
//
// Error measure. For a normal result the error is |y - r| / ulp(r), where r is the exact value
// (std::exp in double for float32, expl in long double for float64) and ulp(r) is the spacing of
// the target type at r's binade (2^(ilogb(r) - 23) for float32). For a result below the smallest
// normal the spacing is fixed, 2^-149 (float32) / 2^-1074 (float64): we require |y - rn(r)| <= one
// such denormal ulp, where rn(r) is r rounded to the target type (y is the correctly rounded
// denormal or one of its two neighbours), and report |y - r| in that unit.
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "test_util.h"

namespace {

template <class T>
struct Bits;
template <>
struct Bits<float> {
  using U = uint32_t;
  static constexpr int kMant = 23, kMinExp = -126;
};
template <>
struct Bits<double> {
  using U = uint64_t;
  static constexpr int kMant = 52, kMinExp = -1022;
};

template <class T>
T from_bits(typename Bits<T>::U u) {
  T x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// Worst cases seen so far, and the first violation of the accuracy contract.
struct Stats {
  double max_ulp = 0;       // normal results
  double max_ulp_x = 0;
  double max_denorm = 0;    // denormal results, |y - r| in denormal ulps
  double max_denorm_x = 0;
  uint64_t checked = 0;
  uint64_t failures = 0;
  std::string first_failure;
};

// Spacing of T's values in the binade of the normal positive value r (held in the wider type W).
// The double case builds 2^(e - mant) from the exponent bits: this runs for ~10^9 inputs.
template <class T, class W>
W ulp_of(W r) {
  if constexpr (std::is_same_v<W, double>) {
    uint64_t u;
    std::memcpy(&u, &r, sizeof u);
    const int64_t e = int64_t((u >> 52) & 0x7ff) - 1023;
    return from_bits<double>(uint64_t(e - Bits<T>::kMant + 1023) << 52);
  } else {
    return std::ldexp(W(1), std::ilogb(r) - Bits<T>::kMant);
  }
}

// Checks y = exp(x) given the exact result r (in the wider type W).
template <class T, class W>
void check_one(T x, T y, W r, Stats& s, double max_ulp) {
  ++s.checked;
  auto fail = [&](const char* why) {
    if (s.failures++ == 0) {
      char buf[256];
      std::snprintf(buf, sizeof buf, "x = %a (%.9g): got %a, exact %a (%s)", double(x), double(x), double(y),
                    double(r), why);
      s.first_failure = buf;
    }
  };
  constexpr T inf = std::numeric_limits<T>::infinity();
  if (std::isnan(x)) {
    if (!std::isnan(y)) fail("NaN must propagate");
    return;
  }
  if (std::isnan(y) || std::signbit(y)) return fail("result must be >= +0");
  const T rn = static_cast<T>(r);  // r rounded to T
  const W tmax = W(std::numeric_limits<T>::max());
  if (r > tmax) {
    // Overflow: +inf, except that a value between max and max + ulp/2 rounds to max (either is
    // within one ulp of it).
    if (!(y == inf || (rn != inf && y == std::numeric_limits<T>::max()))) fail("overflow must give +inf");
    return;
  }
  if (y == inf) return fail("spurious overflow");
  const W min_normal = W(std::numeric_limits<T>::min());
  if (r < min_normal) {
    const W dulp = std::ldexp(W(1), Bits<T>::kMinExp - Bits<T>::kMant);
    if (std::fabs(W(y) - W(rn)) > dulp) fail("denormal result more than one ulp from the rounded value");
    const double e = double(std::fabs(W(y) - r) / dulp);
    if (e > s.max_denorm) {
      s.max_denorm = e;
      s.max_denorm_x = double(x);
    }
    return;
  }
  const W ulp = ulp_of<T>(r);
  const double e = double(std::fabs(W(y) - r) / ulp);
  if (e > s.max_ulp) {
    s.max_ulp = e;
    s.max_ulp_x = double(x);
  }
  if (!(e <= max_ulp)) fail("error above the bound");
}

class ExpAccuracy : public lktest::IsaTest {};
LKTEST_FOR_EACH_ISA(ExpAccuracy);

// |x| <= 87: float32 exp by Tang's 16-entry table (cpp/src/simd/math-inl.h), whose only
// significant rounding is its last FMA: 0.56 ulp measured; beyond it, the degree-6 polynomial.
constexpr float kTableRange = 87.0f;
constexpr double kTableMaxUlp = 0.6;

// Buffers x through logitkit::vexp in batches and checks each result; `table` gets the
// statistics of the inputs with |x| <= kTableRange again, on their own.
class F32Checker {
 public:
  F32Checker(Stats& s, Stats& table) : s_(s), table_(table) { x_.reserve(kBatch); }
  void add(uint32_t bits) {
    x_.push_back(from_bits<float>(bits));
    if (x_.size() == kBatch) flush();
  }
  void flush() {
    y_.resize(x_.size());
    logitkit::vexp(x_.data(), y_.data(), x_.size());
    for (size_t i = 0; i < x_.size(); ++i) {
      const float x = x_[i];
      // Outside [-104, 89] the exact result is far past the float range: no need for std::exp.
      const double r = x < -104.0f ? 0.0 : x > 89.0f ? std::numeric_limits<double>::infinity() : std::exp(double(x));
      check_one<float, double>(x, y_[i], r, s_, 1.0);
      if (std::fabs(x) <= kTableRange) check_one<float, double>(x, y_[i], r, table_, kTableMaxUlp);
      if (x <= -104.0f && !(y_[i] == 0.0f && !std::signbit(y_[i])) && s_.failures++ == 0)
        s_.first_failure = "x = " + std::to_string(x) + " must give exactly +0";
    }
    x_.clear();
  }

 private:
  static constexpr size_t kBatch = size_t{1} << 16;
  Stats& s_;
  Stats& table_;
  std::vector<float> x_;
  std::vector<float> y_;
};

void add_range(F32Checker& c, uint32_t lo, uint32_t hi, uint32_t stride) {
  for (uint64_t b = lo; b <= hi; b += stride) c.add(static_cast<uint32_t>(b));
}

TEST_P(ExpAccuracy, Float32WholeRange) {
  // Every `stride`-th bit pattern of all 2^32 (1 = exhaustive; ctest uses 7, the qemu run more).
  const uint64_t stride = lktest::env_u64("LOGITKIT_EXP_STRIDE", 7);
  ASSERT_GE(stride, 1u);
  const uint32_t fine = static_cast<uint32_t>(std::max<uint64_t>(1, stride / 7));
  Stats s, table;
  F32Checker c(s, table);
  add_range(c, 0, 0xffffffffu, static_cast<uint32_t>(std::min<uint64_t>(stride, 0xffffffffu)));
  // Boundaries, every pattern (or every stride/7-th): results near the float maximum
  // (x in [88, 89]), denormal and vanishing results (x in [-104, -87]), and results next to 1
  // (|x| in [2^-26, 2^-23]), where exp's rounding changes binade.
  add_range(c, 0x42b00000u, 0x42b20000u, fine);
  add_range(c, 0xc2ae0000u, 0xc2d00000u, fine);
  add_range(c, 0x32800000u, 0x34000000u, fine);
  add_range(c, 0xb2800000u, 0xb4000000u, fine);
  const float inf = std::numeric_limits<float>::infinity();
  for (float x : {0.0f, -0.0f, inf, -inf, std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                  std::numeric_limits<float>::signaling_NaN(), std::numeric_limits<float>::max(),
                  -std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(),
                  std::log(std::numeric_limits<float>::max()), -103.972084f, -87.336544f}) {
    uint32_t b;
    std::memcpy(&b, &x, sizeof b);
    c.add(b);
  }
  c.flush();
  std::printf("[ exp      ] %-7s float32: max %.4f ulp on normal results (x = %a), denormal results within %.4f "
              "denormal ulp (2^-149) of exact (x = %a); %" PRIu64 " inputs (every %" PRIu64 "th pattern + boundaries)\n",
              GetParam().c_str(), s.max_ulp, s.max_ulp_x, s.max_denorm, s.max_denorm_x, s.checked, stride);
  std::printf("[ exp      ] %-7s float32: max %.4f ulp for |x| <= %g (x = %a), the table method's range\n",
              GetParam().c_str(), table.max_ulp, double(kTableRange), table.max_ulp_x);
  RecordProperty("max_ulp_f32", std::to_string(s.max_ulp));
  EXPECT_EQ(s.failures, 0u) << s.failures << " failures; first: " << s.first_failure;
  EXPECT_LE(s.max_ulp, 1.0);
  EXPECT_EQ(table.failures, 0u) << "above " << kTableMaxUlp << " ulp: " << table.first_failure;
  EXPECT_GT(table.checked, uint64_t{1} << 18);
  EXPECT_GT(s.checked, uint64_t{1} << 20);
  // Special values, explicitly.
  float in[4] = {-inf, inf, std::numeric_limits<float>::quiet_NaN(), 0.0f}, out[4];
  logitkit::vexp(in, out, 4);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_FALSE(std::signbit(out[0]));
  EXPECT_EQ(out[1], inf);
  EXPECT_TRUE(std::isnan(out[2]));
  EXPECT_EQ(out[3], 1.0f);
}

TEST_P(ExpAccuracy, Float64DenseSample) {
  const uint64_t n = lktest::env_u64("LOGITKIT_EXP_F64_SAMPLES", uint64_t{1} << 22);
  std::mt19937_64 rng(2024);
  std::uniform_real_distribution<double> whole(-746.0, 710.0), small(-1.0, 1.0), tiny(-1e-15, 1e-15),
      denorm(-745.2, -708.3), high(709.0, 709.8);
  std::vector<double> x(n), y(n);
  for (uint64_t i = 0; i < n; ++i) {
    switch (i % 8) {
      case 0: x[i] = from_bits<double>(rng()); break;  // anything, NaN included
      case 1: x[i] = small(rng); break;
      case 2: x[i] = tiny(rng); break;
      case 3: x[i] = denorm(rng); break;
      case 4: x[i] = high(rng); break;
      default: x[i] = whole(rng); break;
    }
  }
  const double inf = std::numeric_limits<double>::infinity();
  for (double v : {0.0, -0.0, inf, -inf, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::max(),
                   -std::numeric_limits<double>::max(), 709.782712893384, 709.7827128933841, -708.3964185322641,
                   -744.4400719213812, -745.1332191019411, -745.1332191019412, -746.0})
    x.push_back(v);
  y.resize(x.size());
  logitkit::vexp(x.data(), y.data(), x.size());
  Stats s;
  for (size_t i = 0; i < x.size(); ++i) {
    const long double r = std::isnan(x[i]) ? 0.0L : std::exp(static_cast<long double>(x[i]));
    check_one<double, long double>(x[i], y[i], r, s, 2.0);
  }
  std::printf("[ exp      ] %-7s float64: max %.4f ulp on normal results (x = %a), denormal results within %.4f "
              "denormal ulp (2^-1074) of exact (x = %a); %" PRIu64 " samples vs long double (%d-bit mantissa)\n",
              GetParam().c_str(), s.max_ulp, s.max_ulp_x, s.max_denorm, s.max_denorm_x, s.checked,
              std::numeric_limits<long double>::digits);
  RecordProperty("max_ulp_f64", std::to_string(s.max_ulp));
  EXPECT_EQ(s.failures, 0u) << s.failures << " failures; first: " << s.first_failure;
  EXPECT_LE(s.max_ulp, 2.0);
}

// The vector exp on unaligned, odd-length spans and in place (x == y).
TEST_P(ExpAccuracy, SpansAndInPlace) {
  std::vector<float> buf(203);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = -50.0f + 0.5f * float(i);
  for (size_t off : {0, 1, 3}) {
    for (size_t len : {0, 1, 5, 17, 64, 199}) {
      std::vector<float> x(buf.begin() + long(off), buf.begin() + long(off + len)), y(len + 1, -1.0f);
      logitkit::vexp(x.data(), y.data(), len);
      for (size_t i = 0; i < len; ++i)
        ASSERT_NEAR(double(y[i]), std::exp(double(x[i])), 1.2e-7 * std::exp(double(x[i]))) << off << "+" << i;
      EXPECT_EQ(y[len], -1.0f) << "wrote past the end, len " << len;
      std::vector<float> z = x;
      logitkit::vexp(z.data(), z.data(), len);
      if (len) {  // memcmp takes no null pointer, even for 0 bytes
        EXPECT_EQ(std::memcmp(z.data(), y.data(), len * sizeof(float)), 0);
      }
    }
  }
}

// Each lane's exp depends on its own input only: a group of vectors that mixes arguments inside
// and outside the table method's range, or NaN, must give every element the bits it gets alone.
TEST_P(ExpAccuracy, LanesIndependentOfNeighbours) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> inside(-87.0f, 87.0f), outside(87.0f, 103.0f);
  const float specials[] = {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), -87.5f, 88.5f, -103.5f, -110.0f};
  std::vector<float> x(4099);
  for (size_t i = 0; i < x.size(); ++i) {
    const unsigned pick = rng() % 64;
    x[i] = pick == 0 ? specials[rng() % 7] : pick == 1 ? (rng() % 2 ? 1.0f : -1.0f) * outside(rng) : inside(rng);
  }
  std::vector<float> together(x.size()), alone(x.size());
  logitkit::vexp(x.data(), together.data(), x.size());
  for (size_t i = 0; i < x.size(); ++i) logitkit::vexp(&x[i], &alone[i], 1);
  EXPECT_EQ(std::memcmp(together.data(), alone.data(), x.size() * sizeof(float)), 0);
}

}  // namespace
