// The math family's kernels: elementwise loops over the vector exp, log and log1p of
// simd/math-inl.h, written once over Simd<T> and compiled per ISA.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <cstddef>

#include "math/math_kernels.h"
#include "simd/loops-inl.h"
#include "simd/math-inl.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace math_impl {

// y = exp(x), the same vexp_group as the softmax kernels: 1 read + 1 write, 1 exp per element.
template <class T>
void exp_array(const T* x, T* y, size_t n) {
  using S = Simd<T>;
  using V = typename S::V;
  for_groups<S>(
      n,
      [&](size_t i, auto g) {
        constexpr int G = decltype(g)::value;
        V e[G];
        LOGITKIT_LOCKSTEP(k, G) e[k] = S::load(x + i + k * S::N);
        vexp_group<T, G>(e);
        LOGITKIT_LOCKSTEP(k, G) S::store(y + i + k * S::N, e[k]);
      },
      [&](size_t i, size_t r) { S::store_tail(y + i, vexp<T>(S::load_tail(x + i, r, T(0))), r); });
}

template <class T, bool kLog1p>
void log_array(const T* x, T* y, size_t n) {
  using S = Simd<T>;
  auto f = [](typename S::V v) { return kLog1p ? vlog1p<T>(v) : vlog<T>(v); };
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(y + i, f(S::load(x + i))); },
      [&](size_t i, size_t r) { S::store_tail(y + i, f(S::load_tail(x + i, r, T(1))), r); });
}

// Compute-bound by construction: no loads or stores in the loop, kFmaChains independent FMAs per step.
template <class T>
T fma_chains(size_t steps) {
  using S = Simd<T>;
  using V = typename S::V;
  V acc[kFmaChains];
  for (int c = 0; c < kFmaChains; ++c) acc[c] = S::set1(T(c));
  const V a = S::set1(T(0.999999)), b = S::set1(T(1e-7));
  for (size_t s = 0; s < steps; ++s) {
#pragma GCC unroll 16  // every chain in its own register
    for (int c = 0; c < kFmaChains; ++c) acc[c] = S::fma(acc[c], a, b);
  }
  V sum = acc[0];
  for (int c = 1; c < kFmaChains; ++c) sum = S::add(sum, acc[c]);
  return S::reduce_add(sum);
}

// Memory-bound: one read and one non-temporal write per element, no read-for-ownership of y.
template <class T>
void stream_copy(const T* x, T* y, size_t n) {
  using S = Simd<T>;
  size_t i = 0;
  for (; i + S::N <= n; i += S::N) S::stream(y + i, S::load(x + i));
  for (; i < n; ++i) y[i] = x[i];
  S::stream_fence();
}

template <class T>
MathKernels<T> make_math_kernels() {
  MathKernels<T> k{};
  k.exp = exp_array<T>;
  k.log = log_array<T, false>;
  k.log1p = log_array<T, true>;
  k.fma_chains = fma_chains<T>;
  k.stream_copy = stream_copy<T>;
  k.lanes = Simd<T>::N;
  return k;
}

}  // namespace math_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
