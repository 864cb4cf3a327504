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

// Soft targets: sum w y and sum w y (x - m) over one block, in T with four accumulator slots each.
template <class T, bool kWeighted>
__attribute__((flatten)) void soft_dots_block(const T* x, const T* y, const T* w, size_t n, T m, T& weight,
                                              T& shifted) {
  using S = Simd<T>;
  using V = typename S::V;
  const V vm = S::set1(m), zero = S::zero();
  V acc_w[4] = {zero, zero, zero, zero}, acc_s[4] = {zero, zero, zero, zero};
  auto step = [&](V xv, V yv, V wv, int k) {
    const V wy = kWeighted ? S::mul(wv, yv) : yv;
    acc_w[k] = S::add(acc_w[k], wy);
    // a zero probability adds nothing, also where x = -inf (a masked class): 0 log 0 = 0
    acc_s[k] = S::add(acc_s[k], S::select(S::eq(yv, zero), zero, S::mul(wy, S::sub(xv, vm))));
  };
  for_vectors<S>(
      n, [&](size_t i, int k) { step(S::load(x + i), S::load(y + i), kWeighted ? S::load(w + i) : zero, k); },
      [&](size_t i, size_t r) {
        step(S::load_tail(x + i, r, m), S::load_tail(y + i, r, T(0)), kWeighted ? S::load_tail(w + i, r, T(0)) : zero,
             0);
      });
  weight = S::reduce_add(sum4<T>(acc_w));
  shifted = S::reduce_add(sum4<T>(acc_s));
}

template <class T>
SoftDots soft_dots(const T* x, const T* y, const T* w, size_t n, T m) {
  BlockSum<T> weight, shifted;
  for_blocks<T>(n, [&](size_t b, size_t len) {
    T bw, bs;
    if (w) {
      soft_dots_block<T, true>(x + b, y + b, w + b, len, m, bw, bs);
    } else {
      soft_dots_block<T, false>(x + b, y + b, nullptr, len, m, bw, bs);
    }
    weight.add(bw);
    shifted.add(bs);
  });
  return {weight.value(), shifted.value()};
}

// One part of a gradient row (GradCoeffs), e may be g. The target's correction goes out in its
// vector's store: a scalar store into a line just written by streaming stores would wait for them
// and read the line back.
template <class T, bool kWeighted, bool kSoft, bool kCapped, bool kStream>
__attribute__((flatten)) void grad_part(const T* e, const T* y, const T* w, const T* capped, T* g, size_t n,
                                        const GradCoeffs<T>& k, size_t index) {
  using S = Simd<T>;
  using V = typename S::V;
  const V va = S::set1(k.alpha), vb = S::set1(k.beta), vg = S::set1(k.gamma), vc = S::set1(k.inv_cap),
          one = S::set1(T(1));
  auto value = [&](size_t i, V ev, V yv, V wv, V cv) {
    const V target = kSoft ? S::fma(vb, yv, vg) : vg;
    V out = kWeighted ? S::fnma(target, wv, S::mul(va, ev)) : S::sub(S::mul(va, ev), target);
    if (index - i < S::N) {  // unsigned: also index < i
      alignas(64) T lanes[S::N] = {};
      lanes[index - i] = k.delta;
      out = S::sub(out, S::load(lanes));
    }
    if (kCapped) {
      const V t = S::mul(cv, vc);
      out = S::mul(out, S::fnma(t, t, one));
    }
    return out;
  };
  for_vectors<S>(
      n,
      [&](size_t i, int) {
        put<S, kStream>(g + i, value(i, S::load(e + i), kSoft ? S::load(y + i) : vg, kWeighted ? S::load(w + i) : vg,
                                     kCapped ? S::load(capped + i) : vg));
      },
      [&](size_t i, size_t r) {
        S::store_tail(g + i,
                      value(i, S::load_tail(e + i, r, T(0)), kSoft ? S::load_tail(y + i, r, T(0)) : vg,
                            kWeighted ? S::load_tail(w + i, r, T(0)) : vg,
                            kCapped ? S::load_tail(capped + i, r, T(0)) : vg),
                      r);
      });
}

template <class T, bool kStream>
void grad_dispatch(const T* e, const T* y, const T* w, const T* capped, T* g, size_t n, const GradCoeffs<T>& k,
                   size_t index) {
  const int form = (w ? 1 : 0) | (y ? 2 : 0) | (capped ? 4 : 0);
  switch (form) {
    case 0: return grad_part<T, false, false, false, kStream>(e, y, w, capped, g, n, k, index);
    case 1: return grad_part<T, true, false, false, kStream>(e, y, w, capped, g, n, k, index);
    case 2: return grad_part<T, false, true, false, kStream>(e, y, w, capped, g, n, k, index);
    case 3: return grad_part<T, true, true, false, kStream>(e, y, w, capped, g, n, k, index);
    case 4: return grad_part<T, false, false, true, kStream>(e, y, w, capped, g, n, k, index);
    case 5: return grad_part<T, true, false, true, kStream>(e, y, w, capped, g, n, k, index);
    case 6: return grad_part<T, false, true, true, kStream>(e, y, w, capped, g, n, k, index);
    default: return grad_part<T, true, true, true, kStream>(e, y, w, capped, g, n, k, index);
  }
}

template <class T>
void grad(const T* e, const T* y, const T* w, const T* capped, T* g, size_t n, const GradCoeffs<T>& k, bool stream) {
  auto part = [&](size_t b, size_t len, auto streamed) {
    constexpr bool kStream = decltype(streamed)::value;
    const size_t at = k.index - b;  // wraps for index < b: outside the part
    grad_dispatch<T, kStream>(e + b, y ? y + b : nullptr, w ? w + b : nullptr, capped ? capped + b : nullptr, g + b,
                              len, k, at);
  };
  if (stream) {
    split_for_streaming(g, n, part);
    Simd<T>::stream_fence();
  } else {
    part(size_t{0}, n, std::false_type{});
  }
}

// cap tanh(x / cap) (vsoftcap, simd/math-inl.h).
template <class T>
__attribute__((flatten)) void softcap(const T* x, T* y, size_t n, T cap) {
  using S = Simd<T>;
  const typename S::V two_over_cap = S::set1(T(2) / cap), vcap = S::set1(cap);
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(y + i, vsoftcap<T>(S::load(x + i), two_over_cap, vcap)); },
      [&](size_t i, size_t r) { S::store_tail(y + i, vsoftcap<T>(S::load_tail(x + i, r, T(0)), two_over_cap, vcap), r); });
}

template <class T>
size_t find_first(const T* x, size_t n, T v) {
  using S = Simd<T>;
  const bool nan = v != v;
  const typename S::V vv = S::set1(v);
  size_t i = 0;
  for (; i + S::N <= n; i += S::N) {
    const typename S::V xv = S::load(x + i);
    if (S::any(nan ? S::ne(xv, xv) : S::eq(xv, vv))) break;
  }
  for (; i < n; ++i)
    if (nan ? x[i] != x[i] : x[i] == v) return i;
  return n;
}

template <class T>
__attribute__((flatten)) T centered_square_block(const T* x, size_t n, T mu) {
  using S = Simd<T>;
  using V = typename S::V;
  const V vm = S::set1(mu);
  V acc[4] = {S::zero(), S::zero(), S::zero(), S::zero()};
  for_vectors<S>(
      n,
      [&](size_t i, int k) {
        const V d = S::sub(S::load(x + i), vm);
        acc[k] = S::fma(d, d, acc[k]);
      },
      [&](size_t i, size_t r) {
        const V d = S::sub(S::load_tail(x + i, r, mu), vm);  // lanes past r: d = 0
        acc[0] = S::fma(d, d, acc[0]);
      });
  return S::reduce_add(sum4<T>(acc));
}

template <class T>
double centered_square_sum(const T* x, size_t n, T mu) {
  BlockSum<T> total;
  for_blocks<T>(n, [&](size_t b, size_t len) { total.add(centered_square_block<T>(x + b, len, mu)); });
  return total.value();
}

template <class T>
CrossEntropyKernels<T> make_cross_entropy_kernels() {
  CrossEntropyKernels<T> k{};
  k.shifted_dot = shifted_dot<T>;
  k.soft_dots = soft_dots<T>;
  k.grad = grad<T>;
  k.softcap = softcap<T>;
  k.find_first = find_first<T>;
  k.centered_square_sum = centered_square_sum<T>;
  return k;
}

}  // namespace cross_entropy_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
