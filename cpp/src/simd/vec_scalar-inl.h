// Portable one-lane "vector" layer: the reference backend and the fallback on every CPU.
// Included only by the scalar translation units (<build>/isa/*_scalar.cc), compiled with the
// baseline flags.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#define LOGITKIT_TARGET scalar

namespace logitkit {
namespace scalar {

template <class T>
struct ScalarBits;
template <>
struct ScalarBits<float> {
  using U = uint32_t;
  static constexpr int kMantBits = 23, kBias = 127;
  static constexpr float kRoundMagic = 0x1.8p23f;
};
template <>
struct ScalarBits<double> {
  using U = uint64_t;
  static constexpr int kMantBits = 52, kBias = 1023;
  static constexpr double kRoundMagic = 0x1.8p52;
};

template <class T>
struct Simd {
  using V = T;
  using M = bool;
  using B = ScalarBits<T>;
  static constexpr size_t N = 1;
  static constexpr bool kNativeScalef = false;
  static constexpr bool kLookup16 = true;

  static V zero() { return T(0); }
  static V set1(T a) { return a; }
  static V load(const T* p) { return *p; }
  static void store(T* p, V v) { *p = v; }
  // No portable non-temporal store: streaming falls back to ordinary stores.
  static constexpr size_t kStreamAlign = sizeof(T);
  static void stream(T* p, V v) { *p = v; }
  static void stream_fence() {}
  static V load_tail(const T* p, size_t n, T fill) { return n ? *p : fill; }
  static void store_tail(T* p, V v, size_t n) {
    if (n) *p = v;
  }

  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V div(V a, V b) { return a / b; }
  // Fused, like the SIMD backends, so every ISA rounds the same way.
  static V fma(V a, V b, V c) { return fused(a, b, c); }
  static V fnma(V a, V b, V c) { return fused(-a, b, c); }
  static float fused(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
  static double fused(double a, double b, double c) { return __builtin_fma(a, b, c); }
  // Same NaN rule as x86: the second operand is returned when either is NaN.
  static V max(V a, V b) { return a > b ? a : b; }
  static V min(V a, V b) { return a < b ? a : b; }
  static V clamp(V x, V lo, V hi) { return min(hi, max(lo, x)); }
  static V abs(V a) { return a < T(0) ? -a : a; }
  // max(acc, |x|) for acc >= 0; a NaN x is ignored (max returns its second operand).
  static V max_magnitude(V acc, V x) { return max(abs(x), acc); }
  // Round half to even through the magic constant; valid for |a| < 2^(mantissa bits - 1).
  static V round(V a) { return (a + B::kRoundMagic) - B::kRoundMagic; }
  static V floor(V a) {
    T r = round(a);
    return r > a ? r - T(1) : r;
  }

  static M lt(V a, V b) { return a < b; }
  static M le(V a, V b) { return a <= b; }
  static M gt(V a, V b) { return a > b; }
  static M eq(V a, V b) { return a == b; }
  static M ne(V a, V b) { return !(a == b); }
  static M not_le(V a, V b) { return !(a <= b); }
  static M mask_or(M a, M b) { return a || b; }
  static M mask_and(M a, M b) { return a && b; }
  static M mask_andnot(M a, M b) { return !a && b; }
  static bool any(M m) { return m; }
  static unsigned bits(M m) { return m ? 1u : 0u; }
  static V select(M m, V a, V b) { return m ? a : b; }
  static V blend(M m, V a, V b) { return m ? a : b; }  // see vec_avx512-inl.h
  // True where the mask byte is nonzero (a NumPy bool/uint8 mask); the empty tail is false.
  static M load_mask(const uint8_t* p) { return *p != 0; }
  static M load_mask_tail(const uint8_t* p, size_t n) { return n != 0 && *p != 0; }
  static V sqrt(V a) { return root(a); }
  static float root(float a) { return __builtin_sqrtf(a); }
  static double root(double a) { return __builtin_sqrt(a); }

  // Packs the selected lane to p[0..count) and returns count (0 or 1); always writes p[0].
  static size_t compress_store(T* p, M m, V v) {
    *p = v;
    return m ? 1 : 0;
  }

  // 2^n for integral n in [-bias, bias]; n == -bias gives +0. NaN or infinite n (an exp of NaN,
  // whose result is NaN through its other factor) is clamped first: converting it to an integer
  // is undefined behaviour in C++, where the vector backends' conversions are defined.
  static V pow2i(V n) {
    using U = typename B::U;
    const T clamped = n == n ? (n < T(-2 * B::kBias) ? T(-2 * B::kBias) : n > T(2 * B::kBias) ? T(2 * B::kBias) : n) : T(0);
    U bits = static_cast<U>(static_cast<int64_t>(clamped) + B::kBias) << B::kMantBits;
    T out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
  }
  static V scalef(V v, V n) { return v * pow2i(n); }
  // 16-entry table lookup: t[bits(idx) & 15].
  using Table16 = const T*;
  static Table16 load_table16(const T* t) { return t; }
  static V lookup16(Table16 t, V idx) { return t[to_bits(idx) & 15]; }
  // Integer arithmetic on the bit patterns.
  static V add_bits(V a, V b) { return from_bits(to_bits(a) + to_bits(b)); }
  template <int kShift>
  static V shl_bits(V a) { return from_bits(to_bits(a) << kShift); }
  static typename B::U to_bits(V v) {
    typename B::U u;
    std::memcpy(&u, &v, sizeof u);
    return u;
  }
  static V from_bits(typename B::U u) {
    T v;
    std::memcpy(&v, &u, sizeof v);
    return v;
  }
  // For finite x > 0 (normal): x = getmant(x) * 2^getexp(x) with getmant in [1, 2); getexp is
  // floor(log2 x) as T. Other inputs give unspecified values (callers select them away).
  static V getexp(V a) {
    using U = typename B::U;
    U bits;
    std::memcpy(&bits, &a, sizeof bits);
    return static_cast<T>(static_cast<int64_t>((bits >> B::kMantBits) & U(2 * B::kBias + 1)) - B::kBias);
  }
  static V getmant(V a) {
    using U = typename B::U;
    U bits;
    std::memcpy(&bits, &a, sizeof bits);
    bits = (bits & ((U(1) << B::kMantBits) - 1)) | (U(B::kBias) << B::kMantBits);
    T out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
  }

  static T reduce_add(V v) { return v; }
  static T reduce_max(V v) { return v; }
  static T reduce_min(V v) { return v; }
};

}  // namespace scalar
}  // namespace logitkit
