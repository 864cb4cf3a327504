// entropy kernels (fused Shannon entropy of softmax(logits) and the Softmax Collapse fraction), written once over Simd<T> and compiled per ISA.
//
// H = log Z - sum(z e^z) / Z with z = c (x - max) and Z = sum e^z, so no probability array is
// formed: the driver takes the row max (softmax's max kernel), then `sums` reads the row once more.
// Cost per element: 2 reads of x (the second hits cache while a row fits in L2), 4 bytes (float32)
// from memory, 1 exp, no writes. Compute-bound (the exp) in cache, memory-bound beyond.
// The max entries are kept out of Z's sum (counted instead), so H = log k + log1p(u / k) - A / Z
// is a sum of non-negative terms with no cancellation, even for nearly one-hot rows.
// The Softmax Collapse fraction needs no kernel of its own: softmax's untied_sum gives the same
// (sum over x != max, tie count) pair.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <cstddef>
#include <limits>

#include "entropy/entropy_kernels.h"
#include "simd/loops-inl.h"
#include "simd/math-inl.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace entropy_impl {

template <class T>
EntropySums sums_block(const T* x, size_t n, T m, T c) {
  using S = Simd<T>;
  using V = typename S::V;
  const V vm = S::set1(m), vc = S::set1(c), one = S::set1(T(1));
  // z below exp's underflow point is raised to it, so e = 0 and z e = 0 (not -inf * 0 = NaN);
  // max() returns its second operand for NaN, which keeps NaN inputs NaN.
  const V zmin = S::set1(ExpConstants<T>::kMinArg);
  V un[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  V ti[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  V ze[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  auto step = [&](V v, int k) {
    auto tie = S::eq(v, vm);
    V z = S::max(zmin, scaled_difference<T>(v, vm, vc));
    V e = vexp<T>(z);
    un[k] = S::add(un[k], S::select(tie, S::zero(), e));
    ti[k] = S::add(ti[k], S::select(tie, one, S::zero()));
    ze[k] = S::fma(z, e, ze[k]);
  };
  for_vectors<S>(
      n, [&](size_t i, int k) { step(S::load(x + i), k); },
      [&](size_t i, size_t r) { step(S::load_tail(x + i, r, -std::numeric_limits<T>::infinity()), 0); });
  return {static_cast<double>(S::reduce_add(sum4<T>(un))), static_cast<double>(S::reduce_add(sum4<T>(ti))),
          static_cast<double>(S::reduce_add(sum4<T>(ze)))};
}

template <class T>
EntropySums sums(const T* x, size_t n, T m, T c) {
  BlockSum<T> untied, ties, zexp;
  for_blocks<T>(n, [&](size_t b, size_t len) {
    EntropySums p = sums_block<T>(x + b, len, m, c);
    untied.add(p.untied);
    ties.add(p.ties);
    zexp.add(p.zexp);
  });
  return {untied.value(), ties.value(), zexp.value()};
}

template <class T>
EntropyKernels<T> make_entropy_kernels() {
  EntropyKernels<T> k{};
  k.sums = sums<T>;
  return k;
}

}  // namespace entropy_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
