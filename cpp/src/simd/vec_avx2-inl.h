// AVX2 + FMA vector layer. Included only by the avx2 translation units (<build>/isa/*_avx2.cc).
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#define LOGITKIT_TARGET avx2

namespace logitkit {
namespace avx2 {

template <class T>
struct Simd;

// Lane-compaction tables for compress_store: for each movemask value, the indices of the set
// lanes first (as 32-bit lane indices for _mm256_permutevar8x32_ps) and the number of set lanes.
struct CompressTable {
  uint8_t idx[256][8];
  uint8_t count[256];
};
constexpr CompressTable make_compress_table(int lanes) {
  CompressTable t{};
  const int per = 8 / lanes;  // 32-bit slots per lane: 1 for float, 2 for double
  for (int m = 0; m < (1 << lanes); ++m) {
    int k = 0;
    for (int i = 0; i < lanes; ++i)
      if ((m >> i) & 1) {
        for (int j = 0; j < per; ++j) t.idx[m][k * per + j] = static_cast<uint8_t>(i * per + j);
        ++k;
      }
    t.count[m] = static_cast<uint8_t>(k);
  }
  return t;
}
inline constexpr CompressTable kCompressFloat = make_compress_table(8);
inline constexpr CompressTable kCompressDouble = make_compress_table(4);

inline __m256i compress_indices(const CompressTable& t, int bits) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(t.idx[bits])));
}

template <>
struct Simd<float> {
  using T = float;
  using V = __m256;
  using M = __m256;  // all-ones lanes are true
  static constexpr size_t N = 8;
  // fold<c>: vec_avx512-inl.h's Simd<float> says what it does.
  static constexpr bool kFold = true;
  template <size_t c>
  static void fold(V a, V b, V& lo, V& hi) {
    switch (c) {
      case 4: lo = _mm256_permute2f128_ps(a, b, 0x20), hi = _mm256_permute2f128_ps(a, b, 0x31); break;
      case 2: lo = _mm256_shuffle_ps(a, b, 0x44), hi = _mm256_shuffle_ps(a, b, 0xee); break;
      default: lo = _mm256_shuffle_ps(a, b, 0x88), hi = _mm256_shuffle_ps(a, b, 0xdd); break;
    }
  }
  static constexpr bool kNativeScalef = false;
  static constexpr bool kLookup16 = true;

  static V zero() { return _mm256_setzero_ps(); }
  static V set1(T a) { return _mm256_set1_ps(a); }
  static V load(const T* p) { return _mm256_loadu_ps(p); }
  static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  // Non-temporal store (p aligned to kStreamAlign): writes bypass the cache, no read-for-ownership.
  static constexpr size_t kStreamAlign = 32;
  static void stream(T* p, V v) { _mm256_stream_ps(p, v); }
  static void stream_fence() { _mm_sfence(); }
  static __m256i first(size_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V load_tail(const T* p, size_t n, T fill) {
    __m256i m = first(n);
    return _mm256_blendv_ps(set1(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void store_tail(T* p, V v, size_t n) { _mm256_maskstore_ps(p, first(n), v); }

  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V fnma(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V clamp(V x, V lo, V hi) { return _mm256_min_ps(hi, _mm256_max_ps(lo, x)); }
  static V abs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  // max(acc, |x|) for acc >= 0; a NaN x is ignored (max returns its second operand).
  static V max_magnitude(V acc, V x) { return max(abs(x), acc); }
  static V round(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V floor(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }

  static M lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static M le(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
  static M gt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static M eq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static M ne(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_NEQ_UQ); }
  static M not_le(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_NLE_UQ); }
  static M mask_or(M a, M b) { return _mm256_or_ps(a, b); }
  static M mask_and(M a, M b) { return _mm256_and_ps(a, b); }
  static M mask_andnot(M a, M b) { return _mm256_andnot_ps(a, b); }
  static bool any(M m) { return _mm256_movemask_ps(m) != 0; }
  static unsigned bits(M m) { return static_cast<unsigned>(_mm256_movemask_ps(m)); }  // lane i -> bit i
  static V select(M m, V a, V b) { return _mm256_blendv_ps(b, a, m); }
  static V blend(M m, V a, V b) { return select(m, a, b); }  // see vec_avx512-inl.h
  // Lane i is true where mask byte p[i] != 0 (a NumPy bool/uint8 mask); tail lanes >= n are false.
  static M load_mask(const uint8_t* p) {
    return widen_mask(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
  static M load_mask_tail(const uint8_t* p, size_t n) {
    long long bytes = 0;  // no byte-granular masked load in AVX2: copy the n < 8 bytes
    std::memcpy(&bytes, p, n);
    return widen_mask(_mm_cvtsi64_si128(bytes));
  }
  static M widen_mask(__m128i bytes) {  // zero-extended bytes are >= 0, so > 0 means != 0
    __m256i w = _mm256_cvtepu8_epi32(bytes);
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(w, _mm256_setzero_si256()));
  }
  static V sqrt(V a) { return _mm256_sqrt_ps(a); }

  // Packs the lanes of v selected by m to p[0..count) and returns count. Writes a whole vector
  // (callers keep N elements of slack); p may be at or before where v was loaded from.
  static size_t compress_store(T* p, M m, V v) {
    const int bits = _mm256_movemask_ps(m);
    _mm256_storeu_ps(p, _mm256_permutevar8x32_ps(v, compress_indices(kCompressFloat, bits)));
    return kCompressFloat.count[bits];
  }

  // dst[e * N + l] = src[l * ld + e] for e, l < N: an 8 x 8 block transposed (24 shuffles).
  static constexpr bool kTranspose = true;
  static void transpose(const T* src, ptrdiff_t ld, T* dst) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + ptrdiff_t(i) * ld);
    for (int p = 0; p < 4; ++p) {
      t[2 * p] = _mm256_unpacklo_ps(r[2 * p], r[2 * p + 1]);
      t[2 * p + 1] = _mm256_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    for (int q = 0; q < 2; ++q) {  // r[4q + j], 128-bit lane L: column 4L + j of rows 4q..4q+3
      r[4 * q + 0] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
      r[4 * q + 1] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0xee);
      r[4 * q + 2] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
      r[4 * q + 3] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xee);
    }
    for (int j = 0; j < 4; ++j) {
      _mm256_storeu_ps(dst + j * 8, _mm256_permute2f128_ps(r[j], r[4 + j], 0x20));
      _mm256_storeu_ps(dst + (4 + j) * 8, _mm256_permute2f128_ps(r[j], r[4 + j], 0x31));
    }
  }

  static V pow2i(V n) {
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
  static V scalef(V v, V n) { return mul(v, pow2i(n)); }  // unused: kNativeScalef is false
  // 16-entry table lookup: lane i gets t[bits(idx_i) & 15]; two 8-entry permutes, bit 3 picks.
  struct Table16 {
    __m256 lo, hi;
  };
  static Table16 load_table16(const T* t) { return {_mm256_loadu_ps(t), _mm256_loadu_ps(t + 8)}; }
  static V lookup16(Table16 t, V idx) {
    const __m256i i = _mm256_castps_si256(idx);
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t.lo, i), _mm256_permutevar8x32_ps(t.hi, i),
                            _mm256_castsi256_ps(_mm256_slli_epi32(i, 28)));
  }
  // Packed selection keys (route_rows; vec_avx512-inl.h says what each does).
  static constexpr bool kPackedKeys = true;
  static V pack_key(V key, V code) {
    const __m256i b = _mm256_castps_si256(key);
    // blendv takes the lanes whose key has its sign bit set
    const __m256 o = _mm256_blendv_ps(key, _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_set1_epi32(INT32_MIN), b)), key);
    return _mm256_or_ps(_mm256_and_ps(o, _mm256_castsi256_ps(_mm256_set1_epi32(~0xff))), code);
  }
  static V key_max(V a, V b) {
    return _mm256_castsi256_ps(_mm256_max_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b)));
  }
  static V key_min(V a, V b) {
    return _mm256_castsi256_ps(_mm256_min_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b)));
  }
  static M same_bucket(V a, V b) {
    const __m256i upper = _mm256_and_si256(_mm256_castps_si256(_mm256_xor_ps(a, b)), _mm256_set1_epi32(~0xff));
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(upper, _mm256_setzero_si256()));
  }
  static V or_bits(V a, V b) { return _mm256_or_ps(a, b); }
  static M low_bits_nonzero(V a) {
    const __m256i low = _mm256_and_si256(_mm256_castps_si256(a), _mm256_set1_epi32(0xff));
    return _mm256_castsi256_ps(_mm256_xor_si256(_mm256_cmpeq_epi32(low, _mm256_setzero_si256()), _mm256_set1_epi32(-1)));
  }
  static V unpack_id(V q) {
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_set1_epi32(0xff), _mm256_and_si256(_mm256_castps_si256(q), _mm256_set1_epi32(0xff))));
  }
  static V gather_column(const T* tile, V id) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_i32gather_ps(tile, _mm256_add_epi32(_mm256_slli_epi32(_mm256_cvtps_epi32(id), 3), lane), 4);
  }
  // Integer arithmetic on the bit patterns.
  static V add_bits(V a, V b) {
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b)));
  }
  template <int kShift>
  static V shl_bits(V a) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(a), kShift)); }
  // x = getmant(x) * 2^getexp(x), getmant in [1, 2), for finite normal x > 0 (bit fields).
  static V getexp(V a) {
    __m256i e = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(a), 23), _mm256_set1_epi32(0xff));
    return _mm256_sub_ps(_mm256_cvtepi32_ps(e), set1(127.0f));
  }
  static V getmant(V a) {
    __m256i m = _mm256_and_si256(_mm256_castps_si256(a), _mm256_set1_epi32(0x007fffff));
    return _mm256_castsi256_ps(_mm256_or_si256(m, _mm256_set1_epi32(0x3f800000)));
  }

  static __m128 fold(V v) { return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); }
  static T reduce_add(V v) {
    __m128 s = fold(v);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static T reduce_max(V v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static T reduce_min(V v) {
    __m128 s = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_min_ps(s, _mm_movehl_ps(s, s));
    s = _mm_min_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

template <>
struct Simd<double> {
  using T = double;
  using V = __m256d;
  using M = __m256d;
  static constexpr size_t N = 4;
  // fold<c>: vec_avx512-inl.h's Simd<float> says what it does.
  static constexpr bool kFold = true;
  template <size_t c>
  static void fold(V a, V b, V& lo, V& hi) {
    if constexpr (c == 2) {
      lo = _mm256_permute2f128_pd(a, b, 0x20), hi = _mm256_permute2f128_pd(a, b, 0x31);
    } else {
      lo = _mm256_unpacklo_pd(a, b), hi = _mm256_unpackhi_pd(a, b);
    }
  }
  static constexpr bool kNativeScalef = false;
  static constexpr bool kLookup16 = false;

  static V zero() { return _mm256_setzero_pd(); }
  static V set1(T a) { return _mm256_set1_pd(a); }
  static V load(const T* p) { return _mm256_loadu_pd(p); }
  static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  static constexpr size_t kStreamAlign = 32;
  static void stream(T* p, V v) { _mm256_stream_pd(p, v); }
  static void stream_fence() { _mm_sfence(); }
  static __m256i first(size_t n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(static_cast<long long>(n)),
                              _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static V load_tail(const T* p, size_t n, T fill) {
    __m256i m = first(n);
    return _mm256_blendv_pd(set1(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
  }
  static void store_tail(T* p, V v, size_t n) { _mm256_maskstore_pd(p, first(n), v); }

  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V div(V a, V b) { return _mm256_div_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V fnma(V a, V b, V c) { return _mm256_fnmadd_pd(a, b, c); }
  static V max(V a, V b) { return _mm256_max_pd(a, b); }
  static V min(V a, V b) { return _mm256_min_pd(a, b); }
  static V clamp(V x, V lo, V hi) { return _mm256_min_pd(hi, _mm256_max_pd(lo, x)); }
  static V abs(V a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
  // max(acc, |x|) for acc >= 0; a NaN x is ignored (max returns its second operand).
  static V max_magnitude(V acc, V x) { return max(abs(x), acc); }
  static V round(V a) { return _mm256_round_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V floor(V a) { return _mm256_round_pd(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }

  static M lt(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_LT_OQ); }
  static M le(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_LE_OQ); }
  static M gt(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
  static M eq(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_EQ_OQ); }
  static M ne(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_NEQ_UQ); }
  static M not_le(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_NLE_UQ); }
  static M mask_or(M a, M b) { return _mm256_or_pd(a, b); }
  static M mask_and(M a, M b) { return _mm256_and_pd(a, b); }
  static M mask_andnot(M a, M b) { return _mm256_andnot_pd(a, b); }
  static bool any(M m) { return _mm256_movemask_pd(m) != 0; }
  static unsigned bits(M m) { return static_cast<unsigned>(_mm256_movemask_pd(m)); }
  static V select(M m, V a, V b) { return _mm256_blendv_pd(b, a, m); }
  static V blend(M m, V a, V b) { return select(m, a, b); }
  static M load_mask(const uint8_t* p) {
    int bytes;
    std::memcpy(&bytes, p, 4);
    return widen_mask(_mm_cvtsi32_si128(bytes));
  }
  static M load_mask_tail(const uint8_t* p, size_t n) {
    int bytes = 0;
    std::memcpy(&bytes, p, n);
    return widen_mask(_mm_cvtsi32_si128(bytes));
  }
  static M widen_mask(__m128i bytes) {
    __m256i w = _mm256_cvtepu8_epi64(bytes);
    return _mm256_castsi256_pd(_mm256_cmpgt_epi64(w, _mm256_setzero_si256()));
  }
  static V sqrt(V a) { return _mm256_sqrt_pd(a); }
  static size_t compress_store(T* p, M m, V v) {
    const int bits = _mm256_movemask_pd(m);
    const __m256 packed = _mm256_permutevar8x32_ps(_mm256_castpd_ps(v), compress_indices(kCompressDouble, bits));
    _mm256_storeu_pd(p, _mm256_castps_pd(packed));
    return kCompressDouble.count[bits];
  }

  // AVX2 has no double->int64 conversion: adding 1.5*2^52 leaves n in the low mantissa bits.
  static V pow2i(V n) {
    __m256i bits = _mm256_castpd_si256(_mm256_add_pd(n, _mm256_set1_pd(0x1.8p52)));
    __m256i e = _mm256_add_epi64(bits, _mm256_set1_epi64x(1023));
    return _mm256_castsi256_pd(_mm256_slli_epi64(e, 52));
  }
  static V scalef(V v, V n) { return mul(v, pow2i(n)); }
  // No int64->double conversion in AVX2: the biased exponent placed in the mantissa of 2^52
  // reads as 2^52 + e.
  static V getexp(V a) {
    __m256i e = _mm256_and_si256(_mm256_srli_epi64(_mm256_castpd_si256(a), 52), _mm256_set1_epi64x(0x7ff));
    V big = _mm256_castsi256_pd(_mm256_or_si256(e, _mm256_castpd_si256(set1(0x1p52))));
    return _mm256_sub_pd(big, set1(0x1p52 + 1023.0));
  }
  static V getmant(V a) {
    __m256i m = _mm256_and_si256(_mm256_castpd_si256(a), _mm256_set1_epi64x(0x000fffffffffffffLL));
    return _mm256_castsi256_pd(_mm256_or_si256(m, _mm256_set1_epi64x(0x3ff0000000000000LL)));
  }

  static T reduce_add(V v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
  static T reduce_max(V v) {
    __m128d s = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_max_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
  static T reduce_min(V v) {
    __m128d s = _mm_min_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_min_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
};

}  // namespace avx2
}  // namespace logitkit
