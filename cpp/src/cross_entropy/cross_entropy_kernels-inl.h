// cross_entropy kernels, written once over Simd<T> and compiled per ISA.
//
// The driver takes each row's max and exp-sum from the softmax slot (online_sum: one read), so a
// row's loss costs one read of the logits. With label smoothing, shifted_dot reads the row once
// more (from L2 for rows that fit). With the gradient, the exp-sum pass stores the exp values
// (softmax's exp_store_sum, into the gradient or, for streamed outputs, into L2 scratch) and
// grad_from_exp turns them into g = alpha e - gamma w: 1 exp per element, as softmax; bound by the
// exp on AVX2 (cross_entropy forward + gradient runs at softmax's speed), by memory beyond.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <cstddef>
#include <type_traits>

#include "cross_entropy/cross_entropy_kernels.h"
#include "simd/block_sum.h"
#include "simd/loops-inl.h"
#include "simd/math-inl.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace cross_entropy_impl {

// sum w (x - m) over one block (w null: sum (x - m)), in T with four accumulator slots.
template <class T, bool kWeighted>
__attribute__((flatten)) T shifted_dot_block(const T* x, const T* w, size_t n, T m) {
  using S = Simd<T>;
  using V = typename S::V;
  const V vm = S::set1(m);
  V acc[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  for_vectors<S>(
      n,
      [&](size_t i, int k) {
        const V d = S::sub(S::load(x + i), vm);
        acc[k] = kWeighted ? S::fma(S::load(w + i), d, acc[k]) : S::add(acc[k], d);
      },
      [&](size_t i, size_t r) {
        // lanes past r: x = m (d = 0) and w = 0, so they add nothing (not -inf * 0)
        const V d = S::sub(S::load_tail(x + i, r, m), vm);
        acc[0] = kWeighted ? S::fma(S::load_tail(w + i, r, T(0)), d, acc[0]) : S::add(acc[0], d);
      });
  return S::reduce_add(sum4<T>(acc));
}

template <class T>
double shifted_dot(const T* x, const T* w, size_t n, T m) {
  BlockSum<T> total;
  for_blocks<T>(n, [&](size_t b, size_t len) {
    total.add(w ? shifted_dot_block<T, true>(x + b, w + b, len, m) : shifted_dot_block<T, false>(x + b, nullptr, len, m));
  });
  return total.value();
}

// g = alpha e - gamma w (w null: - gamma), and g_index -= delta, from the row's exp values e (which
// may be g itself). The target's correction goes out in its vector's store: a scalar store into a
// line just written by streaming stores would wait for them and read the line back.
template <class T, bool kWeighted, bool kStream>
__attribute__((flatten)) void grad_part(const T* e, const T* w, T* g, size_t n, T alpha, T gamma, size_t index,
                                        T delta) {
  using S = Simd<T>;
  using V = typename S::V;
  const V va = S::set1(alpha), vg = S::set1(gamma);
  auto value = [&](size_t i, V ev, V wv) {
    V out = kWeighted ? S::fnma(vg, wv, S::mul(va, ev)) : S::sub(S::mul(va, ev), vg);
    if (index - i < S::N) {  // unsigned: also index < i
      alignas(64) T lanes[S::N] = {};
      lanes[index - i] = delta;
      out = S::sub(out, S::load(lanes));
    }
    return out;
  };
  for_vectors<S>(
      n, [&](size_t i, int) { put<S, kStream>(g + i, value(i, S::load(e + i), kWeighted ? S::load(w + i) : vg)); },
      [&](size_t i, size_t r) {
        S::store_tail(g + i, value(i, S::load_tail(e + i, r, T(0)), kWeighted ? S::load_tail(w + i, r, T(0)) : vg), r);
      });
}

template <class T>
void grad_from_exp(const T* e, const T* w, T* g, size_t n, T alpha, T gamma, size_t index, T delta, bool stream) {
  auto part = [&](size_t b, size_t len, auto streamed) {
    constexpr bool kStream = decltype(streamed)::value;
    const size_t at = index - b;  // wraps for index < b: outside the part
    if (w) {
      grad_part<T, true, kStream>(e + b, w + b, g + b, len, alpha, gamma, at, delta);
    } else {
      grad_part<T, false, kStream>(e + b, nullptr, g + b, len, alpha, gamma, at, delta);
    }
  };
  if (stream) {
    split_for_streaming(g, n, part);
    Simd<T>::stream_fence();
  } else {
    part(size_t{0}, n, std::false_type{});
  }
}

template <class T>
CrossEntropyKernels<T> make_cross_entropy_kernels() {
  CrossEntropyKernels<T> k{};
  k.shifted_dot = shifted_dot<T>;
  k.grad_from_exp = grad_from_exp<T>;
  return k;
}

}  // namespace cross_entropy_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
