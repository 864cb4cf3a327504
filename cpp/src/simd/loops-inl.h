// Loop skeleton shared by all kernels: full vectors in groups of four (so reductions can keep four
// independent accumulators), leftover full vectors, then one masked tail.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <cstddef>

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

// Sums are taken in blocks of kSumBlock elements whose partial sums are added in double, so a
// float accumulator never adds up more than a few hundred terms (error independent of row length).
inline constexpr size_t kSumBlock = 512;

// Calls f(begin, length) for consecutive blocks of [0, n).
template <class F>
__attribute__((always_inline)) inline void for_blocks(size_t n, F&& f) {
  for (size_t i = 0; i < n; i += kSumBlock) f(i, n - i < kSumBlock ? n - i : kSumBlock);
}

}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
