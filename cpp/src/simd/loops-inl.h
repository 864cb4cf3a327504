// Loop skeleton shared by all kernels: full vectors in groups of four (so reductions can keep four
// independent accumulators), leftover full vectors, then one masked tail.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "simd/block_sum.h"

// `for (int k = 0; k < K; ++k)` over the K vectors of a group, fully unrolled: the statements of a
// lockstep body are emitted k = 0..K-1 one after the other, so K independent dependency chains
// are interleaved instruction by instruction and the out-of-order core overlaps their latency.
#ifndef LOGITKIT_LOCKSTEP
#define LOGITKIT_LOCKSTEP(k, K) _Pragma("GCC unroll 8") for (int k = 0; k < (K); ++k)
#endif

namespace logitkit {
namespace LOGITKIT_TARGET {

// body(i, k): the vector starting at element i, accumulator slot k in [0, 4).
// tail(i, r): the last r < N elements starting at i (called at most once).
template <class S, class Body, class Tail>
__attribute__((always_inline)) inline void for_vectors(size_t n, Body&& body, Tail&& tail) {
  constexpr size_t N = S::N;
  size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    body(i, 0);
    body(i + N, 1);
    body(i + 2 * N, 2);
    body(i + 3 * N, 3);
  }
  for (; i + N <= n; i += N) body(i, 0);
  if (i < n) tail(i, n - i);
}

// Vectors per lockstep group: enough independent exp chains to cover their latency, few enough
// that a group's temporaries stay in registers (16 on AVX2, 32 on AVX-512/NEON).
inline constexpr int kGroup = 4;

// body(i, g): the G = decltype(g)::value (kGroup, or 1 for the leftovers) full vectors starting at
// element i; vector k of a group uses accumulator slot k, so sums match for_vectors exactly.
// tail(i, r): the last r < N elements starting at i (called at most once).
template <class S, class Body, class Tail>
__attribute__((always_inline)) inline void for_groups(size_t n, Body&& body, Tail&& tail) {
  constexpr size_t N = S::N;
  size_t i = 0;
  for (; i + kGroup * N <= n; i += kGroup * N) body(i, std::integral_constant<int, kGroup>{});
  for (; i + N <= n; i += N) body(i, std::integral_constant<int, 1>{});
  if (i < n) tail(i, n - i);
}

// The four accumulator slots of a reduction (for_vectors' k, for_groups' lockstep index) added
// pairwise into one vector: every kernel's sums combine their slots in this one order.
template <class T>
typename Simd<T>::V sum4(const typename Simd<T>::V (&acc)[4]) {
  using S = Simd<T>;
  return S::add(S::add(acc[0], acc[1]), S::add(acc[2], acc[3]));
}

// Sums are taken in blocks whose partial sums are added by BlockSum<T> (block_sum.h: in double,
// compensated for float64, so no row's error grows with its number of blocks): 64 vectors, so
// each float accumulator lane (4 slots x N lanes per block) adds up 16 terms, whatever the ISA. Measured on
// 64x32000 softmax rows: 16 terms per lane keep the normalisation error of 8 (rms 0.58 half-ulp
// on AVX-512), 32 raise it by half (AVX2 at 1024 elements), 128 (the scalar backend at 512)
// five-fold; and each block's fixed cost (horizontal sum, double add, range-guard test) took
// 5-8% of an AVX-512 softmax at 512 elements, half that at 1024.
template <class T>
inline constexpr size_t kSumBlock = 64 * Simd<T>::N;

// Calls f(begin, length) for consecutive blocks of [0, n) (kSumBlock<T> elements).
template <class T, class F>
__attribute__((always_inline)) inline void for_blocks(size_t n, F&& f) {
  constexpr size_t kBlock = kSumBlock<T>;
  for (size_t i = 0; i < n; i += kBlock) f(i, n - i < kBlock ? n - i : kBlock);
}

// Ordinary or non-temporal full-vector store.
template <class S, bool kStream, class T>
__attribute__((always_inline)) inline void put(T* p, typename S::V v) {
  if constexpr (kStream) {
    S::stream(p, v);
  } else {
    S::store(p, v);
  }
}

// Runs an elementwise row kernel f(begin, length, stream_tag) so that the full vectors written to y
// use non-temporal stores: a head of ordinary stores up to the stream alignment of y, then the
// aligned rest. Elementwise, so the split never changes a value. Use only for outputs far larger
// than the last-level cache: they then cost one write to memory instead of a read plus a write.
// Callers issue Simd<T>::stream_fence() once after their last streamed row (not per row).
template <class T, class F>
void split_for_streaming(const T* y, size_t n, F&& f) {
  using S = Simd<T>;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(y);
  if (addr % sizeof(T) != 0) {  // cannot reach stream alignment by whole elements
    f(size_t{0}, n, std::false_type{});
    return;
  }
  size_t head = ((S::kStreamAlign - addr % S::kStreamAlign) % S::kStreamAlign) / sizeof(T);
  if (head > n) head = n;
  if (head) f(size_t{0}, head, std::false_type{});
  if (head < n) f(head, n - head, std::true_type{});
}

}  // namespace LOGITKIT_TARGET
}  // namespace logitkit

namespace logitkit {
namespace LOGITKIT_TARGET {

template <class S, class = void>
struct HasTranspose : std::false_type {};
template <class S>
struct HasTranspose<S, std::void_t<decltype(S::kTranspose)>> : std::bool_constant<S::kTranspose> {};

template <class S, class = void>
struct HasFold : std::false_type {};
template <class S>
struct HasFold<S, std::void_t<decltype(S::kFold)>> : std::bool_constant<S::kFold> {};

template <class S, class = void>
struct HasPackedKeys : std::false_type {};
template <class S>
struct HasPackedKeys<S, std::void_t<decltype(S::kPackedKeys)>> : std::bool_constant<S::kPackedKeys> {};

// dst[e * N + l] = src[l * ld + e] for e < cols, l < N: N rows of a matrix turned into `cols`
// vectors of N lanes (column e of the N rows). Whole N x N blocks by the layer's transpose where it
// has one, the rest element by element.
template <class T>
inline void transpose_rows(const T* src, ptrdiff_t ld, size_t cols, T* dst) {
  using S = Simd<T>;
  constexpr size_t N = S::N;
  size_t e = 0;
  if constexpr (HasTranspose<S>::value)
    for (; e + N <= cols; e += N) S::transpose(src + e, ld, dst + e * N);
  for (; e < cols; ++e)
    for (size_t l = 0; l < N; ++l) dst[e * N + l] = src[static_cast<ptrdiff_t>(l) * ld + static_cast<ptrdiff_t>(e)];
}

}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
