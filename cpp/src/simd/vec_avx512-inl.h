// AVX-512 (F, DQ, BW, VL) vector layer. Included only by the avx512 translation units
// (<build>/isa/*_avx512.cc), and by the avx512bf16 ones (the same plus -mavx512bf16, for the
// families with a bfloat16 dot-product kernel: gemm), which get a namespace of their own.
#pragma once
// GCC 12's AVX-512 intrinsics use _mm512_undefined_* internally and trip these false positives.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#if defined(__AVX512BF16__)
#define LOGITKIT_TARGET avx512bf16
#else
#define LOGITKIT_TARGET avx512
#endif

namespace logitkit {
namespace LOGITKIT_TARGET {

template <class T>
struct Simd;

// Bits set in a lane mask (POPCNT is in this backend's flags).
inline size_t mask_popcount(unsigned m) { return static_cast<size_t>(__builtin_popcount(m)); }

template <>
struct Simd<float> {
  using T = float;
  using V = __m512;
  using M = __mmask16;
  static constexpr size_t N = 16;
  // Blocks of 2c lanes split across two vectors (c a power of two below N): lane j of lo and of hi
  // come from the same aligned 2c-lane block of a or b, lo from its lower c lanes and hi from its
  // upper c, and the output pairs up into aligned c-lane blocks. Reducing lo with hi lane-wise halves
  // every block while packing a's and b's blocks into one vector (a segmented reduction's step).
  static constexpr bool kFold = true;
  template <size_t c>
  static void fold(V a, V b, V& lo, V& hi) {
    switch (c) {
      case 8: lo = _mm512_shuffle_f32x4(a, b, 0x44), hi = _mm512_shuffle_f32x4(a, b, 0xee); break;
      case 4: lo = _mm512_shuffle_f32x4(a, b, 0x88), hi = _mm512_shuffle_f32x4(a, b, 0xdd); break;
      case 2: lo = _mm512_shuffle_ps(a, b, 0x44), hi = _mm512_shuffle_ps(a, b, 0xee); break;
      default: lo = _mm512_shuffle_ps(a, b, 0x88), hi = _mm512_shuffle_ps(a, b, 0xdd); break;
    }
  }
  static constexpr bool kNativeScalef = true;
  static constexpr bool kLookup16 = true;  // one vpermps: the table exp (math-inl.h) pays off
#if defined(__AVX512BF16__)
  // bfloat16 pair dot product (vdpbf16ps): lane i of acc += a[2i] b[2i] + a[2i+1] b[2i+1], the
  // products exact, bfloat16 subnormals read as 0 (gemm's bf16 kernel, gemm_kernels-inl.h).
  static constexpr bool kBf16Dot = true;
  using Pairs = __m512i;  // N pairs of bfloat16, a pair per 32-bit lane
  static Pairs load_pairs(const uint16_t* p) { return _mm512_loadu_si512(p); }
  static Pairs set1_pair(uint32_t pair) { return _mm512_set1_epi32(static_cast<int>(pair)); }
  static V dot_bf16(V acc, Pairs a, Pairs b) { return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b); }
  // dst[2w] = a[w], dst[2w + 1] = b[w] for w < 2N: two runs of bfloat16 interleaved into pairs
  static void interleave_pairs(const uint16_t* a, const uint16_t* b, uint16_t* dst) {
    alignas(64) static constexpr uint16_t kLow[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                      8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
    alignas(64) static constexpr uint16_t kHigh[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                                       24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
    const __m512i va = _mm512_loadu_si512(a), vb = _mm512_loadu_si512(b);
    _mm512_storeu_si512(dst, _mm512_permutex2var_epi16(va, _mm512_load_si512(kLow), vb));
    _mm512_storeu_si512(dst + 32, _mm512_permutex2var_epi16(va, _mm512_load_si512(kHigh), vb));
  }
#else
  static constexpr bool kBf16Dot = false;
#endif

  static V zero() { return _mm512_setzero_ps(); }
  static V set1(T a) { return _mm512_set1_ps(a); }
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  // Non-temporal store (p aligned to kStreamAlign): writes bypass the cache, no read-for-ownership.
  static constexpr size_t kStreamAlign = 64;
  static void stream(T* p, V v) { _mm512_stream_ps(p, v); }
  static void stream_fence() { _mm_sfence(); }
  static M first(size_t n) { return static_cast<M>((1u << n) - 1u); }
  static V load_tail(const T* p, size_t n, T fill) {
    return _mm512_mask_loadu_ps(set1(fill), first(n), p);
  }
  static void store_tail(T* p, V v, size_t n) { _mm512_mask_storeu_ps(p, first(n), v); }

  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }    // a*b + c
  static V fnma(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b
  // x86 max/min return the second operand when either is NaN; callers rely on that order.
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V clamp(V x, V lo, V hi) { return _mm512_min_ps(hi, _mm512_max_ps(lo, x)); }  // keeps NaN
  // max(acc, |x|) for acc >= 0; a NaN x is ignored (vrangeps returns the other operand).
  static V max_magnitude(V acc, V x) { return _mm512_range_ps(acc, x, 0x0b); }
  static V abs(V a) { return _mm512_abs_ps(a); }
  static V round(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V floor(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }

  static M lt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M le(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
  static M gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static M eq(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static M ne(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ); }  // true for NaN
  static M not_le(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_NLE_UQ); }  // true for NaN
  static M mask_or(M a, M b) { return static_cast<M>(a | b); }
  static M mask_and(M a, M b) { return static_cast<M>(a & b); }
  static M mask_andnot(M a, M b) { return static_cast<M>(~a & b); }
  static bool any(M m) { return m != 0; }
  static unsigned bits(M m) { return m; }  // lane i -> bit i
  static V select(M m, V a, V b) { return _mm512_mask_blend_ps(m, b, a); }  // m ? a : b
  // Lane i is true where mask byte p[i] != 0 (a NumPy bool/uint8 mask); tail lanes >= n are false.
  // m ? a : b like select, but through a full-width lane mask and a bitwise ternary op. GCC folds
  // select's mask-blend (and zero-masking) into a masked load when an operand comes from memory;
  // on Zen 4 that ran 1.8-2.5x slower than this in the masked kernels' streaming loops.
  static V blend(M m, V a, V b) {
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_movm_epi32(m), _mm512_castps_si512(a),
                                                         _mm512_castps_si512(b), 0xca));
  }
  static M load_mask(const uint8_t* p) {
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm_test_epi8_mask(b, b);
  }
  static M load_mask_tail(const uint8_t* p, size_t n) {
    __m128i b = _mm_maskz_loadu_epi8(first(n), p);
    return _mm_test_epi8_mask(b, b);
  }
  static V sqrt(V a) { return _mm512_sqrt_ps(a); }

  // Packs the lanes of v selected by m to p[0..count) and returns count. Writes a whole vector
  // (callers keep N elements of slack past the kept ones); p may point into the array v was
  // loaded from, at or before its position (in-place compaction). Compress into a register plus
  // a plain store: the memory form of vcompressps is microcoded and slow on Zen 4.
  static size_t compress_store(T* p, M m, V v) {
    _mm512_storeu_ps(p, _mm512_maskz_compress_ps(m, v));
    return mask_popcount(m);
  }

  // dst[e * N + l] = src[l * ld + e] for e, l < N: an N x N block transposed (64 shuffles: pairs
  // of rows within 128-bit lanes, then quads, then the 128-bit lanes across vectors).
  static constexpr bool kTranspose = true;
  static void transpose(const T* src, ptrdiff_t ld, T* dst) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + ptrdiff_t(i) * ld);
    for (int p = 0; p < 8; ++p) {
      t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
      t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    for (int q = 0; q < 4; ++q) {  // r[4q + j], 128-bit lane L: column 4L + j of rows 4q..4q+3
      r[4 * q + 0] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
      r[4 * q + 1] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0xee);
      r[4 * q + 2] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
      r[4 * q + 3] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xee);
    }
    for (int j = 0; j < 4; ++j) {
      const __m512 v0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44), v1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xee);
      const __m512 v2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44),
                   v3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xee);
      _mm512_storeu_ps(dst + (0 + j) * 16, _mm512_shuffle_f32x4(v0, v2, 0x88));
      _mm512_storeu_ps(dst + (4 + j) * 16, _mm512_shuffle_f32x4(v0, v2, 0xdd));
      _mm512_storeu_ps(dst + (8 + j) * 16, _mm512_shuffle_f32x4(v1, v3, 0x88));
      _mm512_storeu_ps(dst + (12 + j) * 16, _mm512_shuffle_f32x4(v1, v3, 0xdd));
    }
  }

  // Packed selection keys (route_rows): a float key and an 8-bit id code in one 32-bit lane, held
  // in V as integer bits and ordered as signed integers. pack_key gives the key's bits as a
  // two's-complement integer (sign-magnitude turned over: increasing with the float, +0 and -0
  // both 0) with its low 8 bits replaced by the code, so that keys compare by their upper 24 bits
  // (the bucket), then by code. key_max / key_min order them; same_bucket is true where two packed
  // keys share their upper 24 bits; low_bits_nonzero where a lane of or_bits-accumulated keys had
  // any of the low 8 bits set (were all keys whole buckets, buckets order exactly); unpack_id is
  // 255 - code as a float; gather_column(tile, id) lane l = tile[id_l N + l].
  static constexpr bool kPackedKeys = true;
  static V pack_key(V key, V code) {
    const __m512i b = _mm512_castps_si512(key);
    const __m512i o = _mm512_mask_sub_epi32(b, _mm512_cmplt_epi32_mask(b, _mm512_setzero_si512()),
                                            _mm512_set1_epi32(INT32_MIN), b);  // -|key|'s bits where negative
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(o, _mm512_set1_epi32(~0xff), _mm512_castps_si512(code), 0xea));
  }
  static V key_max(V a, V b) {
    return _mm512_castsi512_ps(_mm512_max_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
  }
  static V key_min(V a, V b) {
    return _mm512_castsi512_ps(_mm512_min_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
  }
  static M same_bucket(V a, V b) {
    return _mm512_cmplt_epu32_mask(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)),
                                   _mm512_set1_epi32(0x100));
  }
  static V or_bits(V a, V b) { return _mm512_or_ps(a, b); }
  static M low_bits_nonzero(V a) { return _mm512_test_epi32_mask(_mm512_castps_si512(a), _mm512_set1_epi32(0xff)); }
  static V unpack_id(V q) {
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_set1_epi32(0xff), _mm512_and_si512(_mm512_castps_si512(q), _mm512_set1_epi32(0xff))));
  }
  static V gather_column(const T* tile, V id) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_i32gather_ps(_mm512_add_epi32(_mm512_slli_epi32(_mm512_cvtps_epi32(id), 4), lane), tile, 4);
  }

  // 2^n for integral n in [-127, 127]; n == -127 gives +0.
  static V pow2i(V n) {
    __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }
  // v * 2^floor(n), exact including denormal results, overflow and underflow.
  static V scalef(V v, V n) { return _mm512_scalef_ps(v, n); }
  // 16-entry table lookup: lane i gets t[bits(idx_i) & 15].
  using Table16 = __m512;
  static Table16 load_table16(const T* t) { return _mm512_loadu_ps(t); }
  static V lookup16(Table16 t, V idx) { return _mm512_permutexvar_ps(_mm512_castps_si512(idx), t); }
  // Integer arithmetic on the bit patterns.
  static V add_bits(V a, V b) {
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
  }
  template <int kShift>
  static V shl_bits(V a) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(a), kShift)); }
  // x = getmant(x) * 2^getexp(x), getmant in [1, 2), for finite x > 0 (denormals included).
  static V getexp(V a) { return _mm512_getexp_ps(a); }
  static V getmant(V a) { return _mm512_getmant_ps(a, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero); }

  // Horizontal reductions by halving (GCC 12's _mm512_reduce_* trip -Wuninitialized).
  template <class Op>
  static T reduce(V v, Op op) {
    __m256 h = op(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 q = op(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = op(q, _mm_movehl_ps(q, q));
    q = op(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
  }
  struct Add { __m256 operator()(__m256 a, __m256 b) const { return _mm256_add_ps(a, b); }
               __m128 operator()(__m128 a, __m128 b) const { return _mm_add_ps(a, b); } };
  struct Max { __m256 operator()(__m256 a, __m256 b) const { return _mm256_max_ps(a, b); }
               __m128 operator()(__m128 a, __m128 b) const { return _mm_max_ps(a, b); } };
  struct Min { __m256 operator()(__m256 a, __m256 b) const { return _mm256_min_ps(a, b); }
               __m128 operator()(__m128 a, __m128 b) const { return _mm_min_ps(a, b); } };
  static T reduce_add(V v) { return reduce(v, Add{}); }
  static T reduce_max(V v) { return reduce(v, Max{}); }
  static T reduce_min(V v) { return reduce(v, Min{}); }
};

template <>
struct Simd<double> {
  using T = double;
  using V = __m512d;
  using M = __mmask8;
  static constexpr size_t N = 8;
  // fold<c>: as Simd<float>'s above.
  static constexpr bool kFold = true;
  template <size_t c>
  static void fold(V a, V b, V& lo, V& hi) {
    switch (c) {
      case 4: lo = _mm512_shuffle_f64x2(a, b, 0x44), hi = _mm512_shuffle_f64x2(a, b, 0xee); break;
      case 2: lo = _mm512_shuffle_f64x2(a, b, 0x88), hi = _mm512_shuffle_f64x2(a, b, 0xdd); break;
      default: lo = _mm512_unpacklo_pd(a, b), hi = _mm512_unpackhi_pd(a, b); break;
    }
  }
  static constexpr bool kNativeScalef = true;
  static constexpr bool kLookup16 = false;

  static V zero() { return _mm512_setzero_pd(); }
  static V set1(T a) { return _mm512_set1_pd(a); }
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  static constexpr size_t kStreamAlign = 64;
  static void stream(T* p, V v) { _mm512_stream_pd(p, v); }
  static void stream_fence() { _mm_sfence(); }
  static M first(size_t n) { return static_cast<M>((1u << n) - 1u); }
  static V load_tail(const T* p, size_t n, T fill) {
    return _mm512_mask_loadu_pd(set1(fill), first(n), p);
  }
  static void store_tail(T* p, V v, size_t n) { _mm512_mask_storeu_pd(p, first(n), v); }

  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V sub(V a, V b) { return _mm512_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V div(V a, V b) { return _mm512_div_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V fnma(V a, V b, V c) { return _mm512_fnmadd_pd(a, b, c); }
  static V max(V a, V b) { return _mm512_max_pd(a, b); }
  static V min(V a, V b) { return _mm512_min_pd(a, b); }
  static V clamp(V x, V lo, V hi) { return _mm512_min_pd(hi, _mm512_max_pd(lo, x)); }
  // max(acc, |x|) for acc >= 0; a NaN x is ignored (vrangepd returns the other operand).
  static V max_magnitude(V acc, V x) { return _mm512_range_pd(acc, x, 0x0b); }
  static V abs(V a) { return _mm512_abs_pd(a); }
  static V round(V a) { return _mm512_roundscale_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V floor(V a) { return _mm512_roundscale_pd(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }

  static M lt(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ); }
  static M le(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_LE_OQ); }
  static M gt(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
  static M eq(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ); }
  static M ne(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_NEQ_UQ); }
  static M not_le(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_NLE_UQ); }
  static M mask_or(M a, M b) { return static_cast<M>(a | b); }
  static M mask_and(M a, M b) { return static_cast<M>(a & b); }
  static M mask_andnot(M a, M b) { return static_cast<M>(~a & b); }
  static bool any(M m) { return m != 0; }
  static unsigned bits(M m) { return m; }  // lane i -> bit i
  static V select(M m, V a, V b) { return _mm512_mask_blend_pd(m, b, a); }
  static V blend(M m, V a, V b) {
    return _mm512_castsi512_pd(_mm512_ternarylogic_epi64(_mm512_movm_epi64(m), _mm512_castpd_si512(a),
                                                         _mm512_castpd_si512(b), 0xca));
  }
  static M load_mask(const uint8_t* p) {
    __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));  // 8 bytes, upper half zero
    return static_cast<M>(_mm_test_epi8_mask(b, b));
  }
  static M load_mask_tail(const uint8_t* p, size_t n) {
    __m128i b = _mm_maskz_loadu_epi8(static_cast<__mmask16>(first(n)), p);
    return static_cast<M>(_mm_test_epi8_mask(b, b));
  }
  static V sqrt(V a) { return _mm512_sqrt_pd(a); }
  static size_t compress_store(T* p, M m, V v) {
    _mm512_storeu_pd(p, _mm512_maskz_compress_pd(m, v));
    return mask_popcount(m);
  }

  // 2^n for integral n in [-1023, 1023]; n == -1023 gives +0.
  static V pow2i(V n) {
    __m512i e = _mm512_add_epi64(_mm512_cvtpd_epi64(n), _mm512_set1_epi64(1023));
    return _mm512_castsi512_pd(_mm512_slli_epi64(e, 52));
  }
  static V scalef(V v, V n) { return _mm512_scalef_pd(v, n); }
  static V getexp(V a) { return _mm512_getexp_pd(a); }
  static V getmant(V a) { return _mm512_getmant_pd(a, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero); }

  template <class Op>
  static T reduce(V v, Op op) {
    __m256d h = op(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    __m128d q = op(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    q = op(q, _mm_unpackhi_pd(q, q));
    return _mm_cvtsd_f64(q);
  }
  struct Add { __m256d operator()(__m256d a, __m256d b) const { return _mm256_add_pd(a, b); }
               __m128d operator()(__m128d a, __m128d b) const { return _mm_add_pd(a, b); } };
  struct Max { __m256d operator()(__m256d a, __m256d b) const { return _mm256_max_pd(a, b); }
               __m128d operator()(__m128d a, __m128d b) const { return _mm_max_pd(a, b); } };
  struct Min { __m256d operator()(__m256d a, __m256d b) const { return _mm256_min_pd(a, b); }
               __m128d operator()(__m128d a, __m128d b) const { return _mm_min_pd(a, b); } };
  static T reduce_add(V v) { return reduce(v, Add{}); }
  static T reduce_max(V v) { return reduce(v, Max{}); }
  static T reduce_min(V v) { return reduce(v, Min{}); }
};

}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
