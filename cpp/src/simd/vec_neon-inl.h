// AArch64 NEON (ASIMD) vector layer. Included only by the neon translation units (<build>/isa/*_neon.cc).
#pragma once
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#define LOGITKIT_TARGET neon

namespace logitkit {
namespace neon {

template <class T>
struct Simd;

template <>
struct Simd<float> {
  using T = float;
  using V = float32x4_t;
  using M = uint32x4_t;
  static constexpr size_t N = 4;
  // fold<c>: vec_avx512-inl.h's Simd<float> says what it does.
  static constexpr bool kFold = true;
  template <size_t c>
  static void fold(V a, V b, V& lo, V& hi) {
    if constexpr (c == 2) {
      lo = vcombine_f32(vget_low_f32(a), vget_low_f32(b)), hi = vcombine_f32(vget_high_f32(a), vget_high_f32(b));
    } else {
      lo = vuzp1q_f32(a, b), hi = vuzp2q_f32(a, b);
    }
  }
  static constexpr bool kNativeScalef = false;
  static constexpr bool kLookup16 = true;  // vqtbl4q_u8 over the 64 table bytes

  static V zero() { return vdupq_n_f32(0.0f); }
  static V set1(T a) { return vdupq_n_f32(a); }
  static V load(const T* p) { return vld1q_f32(p); }
  static void store(T* p, V v) { vst1q_f32(p, v); }
  // ACLE has no non-temporal store intrinsic: streaming falls back to ordinary stores.
  static constexpr size_t kStreamAlign = 16;
  static void stream(T* p, V v) { vst1q_f32(p, v); }
  static void stream_fence() {}
  // NEON has no masked memory access: tails go through a small stack buffer.
  static V load_tail(const T* p, size_t n, T fill) {
    T buf[N] = {fill, fill, fill, fill};
    for (size_t i = 0; i < n; ++i) buf[i] = p[i];
    return vld1q_f32(buf);
  }
  static void store_tail(T* p, V v, size_t n) {
    T buf[N];
    vst1q_f32(buf, v);
    for (size_t i = 0; i < n; ++i) p[i] = buf[i];
  }

  static V add(V a, V b) { return vaddq_f32(a, b); }
  static V sub(V a, V b) { return vsubq_f32(a, b); }
  static V mul(V a, V b) { return vmulq_f32(a, b); }
  static V div(V a, V b) { return vdivq_f32(a, b); }
  static V fma(V a, V b, V c) { return vfmaq_f32(c, a, b); }
  static V fnma(V a, V b, V c) { return vfmsq_f32(c, a, b); }
  static V max(V a, V b) { return vmaxq_f32(a, b); }  // NaN-propagating
  static V min(V a, V b) { return vminq_f32(a, b); }
  static V clamp(V x, V lo, V hi) { return vminq_f32(vmaxq_f32(x, lo), hi); }
  static V abs(V a) { return vabsq_f32(a); }
  static V round(V a) { return vrndnq_f32(a); }
  static V floor(V a) { return vrndmq_f32(a); }

  static M lt(V a, V b) { return vcltq_f32(a, b); }
  static M le(V a, V b) { return vcleq_f32(a, b); }
  static M gt(V a, V b) { return vcgtq_f32(a, b); }
  static M eq(V a, V b) { return vceqq_f32(a, b); }
  static M ne(V a, V b) { return vmvnq_u32(vceqq_f32(a, b)); }
  static M not_le(V a, V b) { return vmvnq_u32(vcleq_f32(a, b)); }
  static M mask_or(M a, M b) { return vorrq_u32(a, b); }
  static M mask_and(M a, M b) { return vandq_u32(a, b); }
  static M mask_andnot(M a, M b) { return vbicq_u32(b, a); }
  static bool any(M m) { return vmaxvq_u32(m) != 0; }
  static unsigned bits(M m) {  // lane i -> bit i
    const uint32_t weights[4] = {1, 2, 4, 8};
    return vaddvq_u32(vandq_u32(m, vld1q_u32(weights)));
  }
  static V select(M m, V a, V b) { return vbslq_f32(m, a, b); }
  static V blend(M m, V a, V b) { return select(m, a, b); }  // see vec_avx512-inl.h
  // Lane i is true where mask byte p[i] != 0 (a NumPy bool/uint8 mask); tail lanes >= n are false.
  // The bytes are moved through a scalar so no lane reads past p[N - 1] (little-endian AArch64).
  static M load_mask(const uint8_t* p) {
    uint32_t bytes;
    std::memcpy(&bytes, p, 4);
    return widen_mask(bytes);
  }
  static M load_mask_tail(const uint8_t* p, size_t n) {
    uint32_t bytes = 0;
    std::memcpy(&bytes, p, n);
    return widen_mask(bytes);
  }
  static M widen_mask(uint32_t bytes) {
    uint16x8_t h = vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(bytes)));
    uint32x4_t w = vmovl_u16(vget_low_u16(h));
    return vtstq_u32(w, w);
  }
  static V sqrt(V a) { return vsqrtq_f32(a); }

  // Packs the lanes of v selected by m to p[0..count) and returns count. NEON has no compress:
  // every lane is written at the running position, which advances only for selected lanes.
  // Writes at most N elements (callers keep N of slack); p may be at or before v's source.
  static size_t compress_store(T* p, M m, V v) {
    T buf[N];
    uint32_t sel[N];
    vst1q_f32(buf, v);
    vst1q_u32(sel, m);
    size_t k = 0;
    for (size_t i = 0; i < N; ++i) {
      p[k] = buf[i];
      k += sel[i] & 1u;
    }
    return k;
  }

  static V pow2i(V n) {
    int32x4_t e = vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(e, 23));
  }
  static V scalef(V v, V n) { return mul(v, pow2i(n)); }
  // 16-entry table lookup: lane i gets t[bits(idx_i) & 15], by a byte shuffle over the table's
  // 64 bytes with byte indices 4 j + {0, 1, 2, 3}.
  using Table16 = uint8x16x4_t;
  static Table16 load_table16(const T* t) { return vld1q_u8_x4(reinterpret_cast<const uint8_t*>(t)); }
  static V lookup16(Table16 t, V idx) {
    const uint32x4_t j = vandq_u32(vreinterpretq_u32_f32(idx), vdupq_n_u32(15));
    const uint32x4_t bytes = vmlaq_n_u32(vdupq_n_u32(0x03020100u), j, 0x04040404u);
    return vreinterpretq_f32_u8(vqtbl4q_u8(t, vreinterpretq_u8_u32(bytes)));
  }
  // Packed selection keys (route_rows; vec_avx512-inl.h says what each does).
  static constexpr bool kPackedKeys = true;
  static V pack_key(V key, V code) {
    const int32x4_t b = vreinterpretq_s32_f32(key);
    const int32x4_t o = vbslq_s32(vcltq_s32(b, vdupq_n_s32(0)), vsubq_s32(vdupq_n_s32(INT32_MIN), b), b);
    return vreinterpretq_f32_s32(vorrq_s32(vandq_s32(o, vdupq_n_s32(~0xff)), vreinterpretq_s32_f32(code)));
  }
  static V key_max(V a, V b) {
    return vreinterpretq_f32_s32(vmaxq_s32(vreinterpretq_s32_f32(a), vreinterpretq_s32_f32(b)));
  }
  static V key_min(V a, V b) {
    return vreinterpretq_f32_s32(vminq_s32(vreinterpretq_s32_f32(a), vreinterpretq_s32_f32(b)));
  }
  static M same_bucket(V a, V b) {
    const uint32x4_t x = veorq_u32(vreinterpretq_u32_f32(a), vreinterpretq_u32_f32(b));
    return vceqq_u32(vandq_u32(x, vdupq_n_u32(~0xffu)), vdupq_n_u32(0));
  }
  static V or_bits(V a, V b) {
    return vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(a), vreinterpretq_u32_f32(b)));
  }
  static M low_bits_nonzero(V a) { return vtstq_u32(vreinterpretq_u32_f32(a), vdupq_n_u32(0xff)); }
  static V unpack_id(V q) {
    return vcvtq_f32_s32(vsubq_s32(vdupq_n_s32(0xff), vandq_s32(vreinterpretq_s32_f32(q), vdupq_n_s32(0xff))));
  }
  static V gather_column(const T* tile, V id) {  // no gather instruction: four loads
    const int32x4_t i = vcvtq_s32_f32(id);
    float32x4_t v = vdupq_n_f32(0.0f);
    v = vsetq_lane_f32(tile[vgetq_lane_s32(i, 0) * 4 + 0], v, 0);
    v = vsetq_lane_f32(tile[vgetq_lane_s32(i, 1) * 4 + 1], v, 1);
    v = vsetq_lane_f32(tile[vgetq_lane_s32(i, 2) * 4 + 2], v, 2);
    v = vsetq_lane_f32(tile[vgetq_lane_s32(i, 3) * 4 + 3], v, 3);
    return v;
  }
  // Integer arithmetic on the bit patterns.
  static V add_bits(V a, V b) {
    return vreinterpretq_f32_u32(vaddq_u32(vreinterpretq_u32_f32(a), vreinterpretq_u32_f32(b)));
  }
  template <int kShift>
  static V shl_bits(V a) { return vreinterpretq_f32_u32(vshlq_n_u32(vreinterpretq_u32_f32(a), kShift)); }
  // max(acc, |x|) for acc >= 0; a NaN x is ignored (vmaxnm returns the number).
  static V max_magnitude(V acc, V x) { return vmaxnmq_f32(vabsq_f32(x), acc); }
  // x = getmant(x) * 2^getexp(x), getmant in [1, 2), for finite normal x > 0 (bit fields).
  static V getexp(V a) {
    uint32x4_t e = vandq_u32(vshrq_n_u32(vreinterpretq_u32_f32(a), 23), vdupq_n_u32(0xff));
    return vsubq_f32(vcvtq_f32_u32(e), vdupq_n_f32(127.0f));
  }
  static V getmant(V a) {
    uint32x4_t m = vandq_u32(vreinterpretq_u32_f32(a), vdupq_n_u32(0x007fffff));
    return vreinterpretq_f32_u32(vorrq_u32(m, vdupq_n_u32(0x3f800000)));
  }

  static T reduce_add(V v) { return vaddvq_f32(v); }
  static T reduce_max(V v) { return vmaxvq_f32(v); }
  static T reduce_min(V v) { return vminvq_f32(v); }
};

template <>
struct Simd<double> {
  using T = double;
  using V = float64x2_t;
  using M = uint64x2_t;
  static constexpr size_t N = 2;
  // fold<c>: vec_avx512-inl.h's Simd<float> says what it does.
  static constexpr bool kFold = true;
  template <size_t>
  static void fold(V a, V b, V& lo, V& hi) { lo = vzip1q_f64(a, b), hi = vzip2q_f64(a, b); }
  static constexpr bool kNativeScalef = false;
  static constexpr bool kLookup16 = false;

  static V zero() { return vdupq_n_f64(0.0); }
  static V set1(T a) { return vdupq_n_f64(a); }
  static V load(const T* p) { return vld1q_f64(p); }
  static void store(T* p, V v) { vst1q_f64(p, v); }
  static constexpr size_t kStreamAlign = 16;
  static void stream(T* p, V v) { vst1q_f64(p, v); }
  static void stream_fence() {}
  static V load_tail(const T* p, size_t n, T fill) {
    T buf[N] = {fill, fill};
    for (size_t i = 0; i < n; ++i) buf[i] = p[i];
    return vld1q_f64(buf);
  }
  static void store_tail(T* p, V v, size_t n) {
    T buf[N];
    vst1q_f64(buf, v);
    for (size_t i = 0; i < n; ++i) p[i] = buf[i];
  }

  static V add(V a, V b) { return vaddq_f64(a, b); }
  static V sub(V a, V b) { return vsubq_f64(a, b); }
  static V mul(V a, V b) { return vmulq_f64(a, b); }
  static V div(V a, V b) { return vdivq_f64(a, b); }
  static V fma(V a, V b, V c) { return vfmaq_f64(c, a, b); }
  static V fnma(V a, V b, V c) { return vfmsq_f64(c, a, b); }
  static V max(V a, V b) { return vmaxq_f64(a, b); }
  static V min(V a, V b) { return vminq_f64(a, b); }
  static V clamp(V x, V lo, V hi) { return vminq_f64(vmaxq_f64(x, lo), hi); }
  static V abs(V a) { return vabsq_f64(a); }
  // max(acc, |x|) for acc >= 0; a NaN x is ignored (vmaxnm returns the number).
  static V max_magnitude(V acc, V x) { return vmaxnmq_f64(vabsq_f64(x), acc); }
  static V round(V a) { return vrndnq_f64(a); }
  static V floor(V a) { return vrndmq_f64(a); }

  static M lt(V a, V b) { return vcltq_f64(a, b); }
  static M le(V a, V b) { return vcleq_f64(a, b); }
  static M gt(V a, V b) { return vcgtq_f64(a, b); }
  static M eq(V a, V b) { return vceqq_f64(a, b); }
  static M ne(V a, V b) {
    return vreinterpretq_u64_u32(vmvnq_u32(vreinterpretq_u32_u64(vceqq_f64(a, b))));
  }
  static M not_le(V a, V b) {
    return vreinterpretq_u64_u32(vmvnq_u32(vreinterpretq_u32_u64(vcleq_f64(a, b))));
  }
  static M mask_or(M a, M b) { return vorrq_u64(a, b); }
  static M mask_and(M a, M b) { return vandq_u64(a, b); }
  static M mask_andnot(M a, M b) { return vbicq_u64(b, a); }
  static bool any(M m) { return (vgetq_lane_u64(m, 0) | vgetq_lane_u64(m, 1)) != 0; }
  static unsigned bits(M m) { return static_cast<unsigned>((vgetq_lane_u64(m, 0) & 1) | (vgetq_lane_u64(m, 1) & 2)); }
  static V select(M m, V a, V b) { return vbslq_f64(m, a, b); }
  static V blend(M m, V a, V b) { return select(m, a, b); }
  static M load_mask(const uint8_t* p) {
    uint16_t bytes;
    std::memcpy(&bytes, p, 2);
    return widen_mask(bytes);
  }
  static M load_mask_tail(const uint8_t* p, size_t n) {
    uint16_t bytes = 0;
    std::memcpy(&bytes, p, n);
    return widen_mask(bytes);
  }
  static M widen_mask(uint16_t bytes) {
    uint16x8_t h = vmovl_u8(vreinterpret_u8_u16(vdup_n_u16(bytes)));
    uint64x2_t w = vmovl_u32(vget_low_u32(vmovl_u16(vget_low_u16(h))));
    return vtstq_u64(w, w);
  }
  static V sqrt(V a) { return vsqrtq_f64(a); }
  static size_t compress_store(T* p, M m, V v) {
    T buf[N];
    uint64_t sel[N];
    vst1q_f64(buf, v);
    vst1q_u64(sel, m);
    size_t k = 0;
    for (size_t i = 0; i < N; ++i) {
      p[k] = buf[i];
      k += sel[i] & 1u;
    }
    return k;
  }

  static V pow2i(V n) {
    int64x2_t e = vaddq_s64(vcvtnq_s64_f64(n), vdupq_n_s64(1023));
    return vreinterpretq_f64_s64(vshlq_n_s64(e, 52));
  }
  static V scalef(V v, V n) { return mul(v, pow2i(n)); }
  static V getexp(V a) {
    uint64x2_t e = vandq_u64(vshrq_n_u64(vreinterpretq_u64_f64(a), 52), vdupq_n_u64(0x7ff));
    return vsubq_f64(vcvtq_f64_u64(e), vdupq_n_f64(1023.0));
  }
  static V getmant(V a) {
    uint64x2_t m = vandq_u64(vreinterpretq_u64_f64(a), vdupq_n_u64(0x000fffffffffffffULL));
    return vreinterpretq_f64_u64(vorrq_u64(m, vdupq_n_u64(0x3ff0000000000000ULL)));
  }

  static T reduce_add(V v) { return vaddvq_f64(v); }
  static T reduce_max(V v) { return vmaxvq_f64(v); }
  static T reduce_min(V v) { return vminvq_f64(v); }
};

}  // namespace neon
}  // namespace logitkit
