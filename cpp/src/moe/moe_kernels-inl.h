// moe kernels, written once over Simd<T> and compiled per ISA.
//
// combine (unpermute): each output row reads its k expert rows once and is written once, the k
// products summed in registers in slot order: memory-bound (k + 1 rows of traffic per token), so
// it is judged against the copy roof. contrast: two reads and one write per element, memory-bound.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <cstddef>
#include <limits>

#include "moe/moe_kernels.h"
#include "simd/loops-inl.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace moe_impl {

template <class T>
void combine(const T* const* rows, const T* w, size_t count, T* out, size_t n) {
  using S = Simd<T>;
  using V = typename S::V;
  auto at = [&](size_t i, auto load) {
    V acc = S::mul(S::set1(w[0]), load(rows[0] + i));
    for (size_t j = 1; j < count; ++j) acc = S::fma(S::set1(w[j]), load(rows[j] + i), acc);
    return acc;
  };
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(out + i, at(i, [](const T* p) { return S::load(p); })); },
      [&](size_t i, size_t r) {
        S::store_tail(out + i, at(i, [r](const T* p) { return S::load_tail(p, r, T(0)); }), r);
      });
}

template <class T>
void contrast(const T* strong, const T* weak, T* out, size_t n, T threshold, T beta) {
  using S = Simd<T>;
  using V = typename S::V;
  // (1 + beta) s - beta w as s + beta (s - w): two roundings instead of three, and equal logits
  // stay finite for any beta (the product form overflows to inf - inf there)
  const V b = S::set1(beta), thr = S::set1(threshold), minus_inf = S::set1(-std::numeric_limits<T>::infinity());
  auto f = [&](V s, V w) { return S::select(S::lt(s, thr), minus_inf, S::fma(b, S::sub(s, w), s)); };
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(out + i, f(S::load(strong + i), S::load(weak + i))); },
      [&](size_t i, size_t r) {
        S::store_tail(out + i, f(S::load_tail(strong + i, r, T(0)), S::load_tail(weak + i, r, T(0))), r);
      });
}

template <class T>
MoeKernels<T> make_moe_kernels() {
  MoeKernels<T> k{};
  k.combine = combine<T>;
  k.contrast = contrast<T>;
  return k;
}

}  // namespace moe_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
