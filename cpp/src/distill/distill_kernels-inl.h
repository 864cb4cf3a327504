// distill kernels, written once over Simd<T> and compiled per ISA.
//
// A row of kl_div, jsd or tvd reads the student's and the teacher's logits twice (their max, then
// the exp values, kept in L2 scratch), and computes the terms from there: two exps per element
// pair (and one log for jsd's mixture). With the gradient, u (d loss / d log p) goes to scratch
// and project writes g = k (u - p sum u). The KLs need neither: their losses are c sum q (t - s)
// or c sum p (s - t) plus row constants (weighted_difference_sum), their gradients k (p - q) and
// reverse_kl_grad. Compute-bound by the two exps on AVX2 (12 bytes per element with the gradient,
// 8 without), memory-bound with wider vectors.
#pragma once  // once per translation unit; each TU compiles exactly one ISA
#ifndef LOGITKIT_TARGET
#error "include a vec_<isa>-inl.h first"
#endif

#include <cstddef>
#include <type_traits>

#include "distill/distill_kernels.h"
#include "simd/block_sum.h"
#include "simd/loops-inl.h"
#include "simd/math-inl.h"

namespace logitkit {
namespace LOGITKIT_TARGET {
namespace distill_impl {

template <class T, DivergenceKind kKind, bool kStoreU>
__attribute__((flatten)) void terms_block(const T* es, const T* et, const T* s, const T* t, T* u, size_t n,
                                          const DivergenceRow<T>& row, T& loss, T& u_sum) {
  using S = Simd<T>;
  using V = typename S::V;
  const V zero = S::zero(), c = S::set1(row.c), ms = S::set1(row.max_s), mt = S::set1(row.max_t),
          inv_ss = S::set1(row.inv_sum_s), inv_st = S::set1(row.inv_sum_t), lss = S::set1(row.log_sum_s),
          lst = S::set1(row.log_sum_t), beta = S::set1(row.beta), beta_c = S::set1(T(1) - row.beta),
          half = S::set1(T(0.5));
  V acc_l[4] = {zero, zero, zero, zero}, acc_u[4] = {zero, zero, zero, zero};
  // (term, u) of one vector; lanes where a probability is 0 add 0 (0 log 0 = 0), also where the
  // logit is -inf and its log-probability -inf
  auto step = [&](V esv, V etv, V sv, V tv, V& term, V& uv) {
    const V p = S::mul(esv, inv_ss), q = S::mul(etv, inv_st);
    const auto p_zero = S::eq(p, zero), q_zero = S::eq(q, zero);
    if constexpr (kKind == DivergenceKind::kTVD) {
      const V d = S::sub(p, q);
      term = S::mul(half, S::abs(d));
      const V sign = S::select(S::gt(d, zero), half, S::select(S::lt(d, zero), S::sub(zero, half), zero));
      uv = S::mul(sign, p);
    } else {
      const V lp = S::sub(S::mul(c, S::sub(sv, ms)), lss), lq = S::sub(S::mul(c, S::sub(tv, mt)), lst);
      if constexpr (kKind == DivergenceKind::kForwardKL) {
        term = S::select(q_zero, zero, S::mul(q, S::sub(lq, lp)));
        uv = S::sub(zero, q);
      } else {  // JSD: beta KL(q || m) + (1 - beta) KL(p || m), m = beta q + (1 - beta) p
        const V lm = vlog<T>(S::fma(beta, q, S::mul(beta_c, p)));
        const V qt = S::select(q_zero, zero, S::mul(q, S::sub(lq, lm)));
        const V pt = S::select(p_zero, zero, S::mul(p, S::sub(lp, lm)));
        uv = S::mul(beta_c, pt);
        term = S::fma(beta, qt, uv);
      }
    }
  };
  for_vectors<S>(
      n,
      [&](size_t i, int k) {
        V term, uv;
        step(S::load(es + i), S::load(et + i), S::load(s + i), S::load(t + i), term, uv);
        acc_l[k] = S::add(acc_l[k], term);
        acc_u[k] = S::add(acc_u[k], uv);
        if (kStoreU) S::store(u + i, uv);
      },
      [&](size_t i, size_t r) {
        V term, uv;  // lanes past r: p = q = 0 with finite logs, so they add 0
        step(S::load_tail(es + i, r, T(0)), S::load_tail(et + i, r, T(0)), S::load_tail(s + i, r, row.max_s),
             S::load_tail(t + i, r, row.max_t), term, uv);
        acc_l[0] = S::add(acc_l[0], term);
        acc_u[0] = S::add(acc_u[0], uv);
        if (kStoreU) S::store_tail(u + i, uv, r);
      });
  loss = S::reduce_add(sum4<T>(acc_l));
  u_sum = S::reduce_add(sum4<T>(acc_u));
}

template <class T, DivergenceKind kKind>
DivergenceSums terms_of(const T* es, const T* et, const T* s, const T* t, T* u, size_t n, const DivergenceRow<T>& row) {
  BlockSum<T> loss, u_sum;
  for_blocks<T>(n, [&](size_t b, size_t len) {
    T l, us;
    if (u) {
      terms_block<T, kKind, true>(es + b, et + b, s + b, t + b, u + b, len, row, l, us);
    } else {
      terms_block<T, kKind, false>(es + b, et + b, s + b, t + b, nullptr, len, row, l, us);
    }
    loss.add(l);
    u_sum.add(us);
  });
  return {loss.value(), u_sum.value()};
}

template <class T>
DivergenceSums terms(DivergenceKind kind, const T* es, const T* et, const T* s, const T* t, T* u, size_t n,
                     const DivergenceRow<T>& row) {
  switch (kind) {
    case DivergenceKind::kForwardKL: return terms_of<T, DivergenceKind::kForwardKL>(es, et, s, t, u, n, row);
    case DivergenceKind::kJSD: return terms_of<T, DivergenceKind::kJSD>(es, et, s, t, u, n, row);
    default: return terms_of<T, DivergenceKind::kTVD>(es, et, s, t, u, n, row);
  }
}

template <class T, bool kStream>
__attribute__((flatten)) void project_part(const T* u, const T* es, T* g, size_t n, T k, T v) {
  using S = Simd<T>;
  const typename S::V vk = S::set1(k), vv = S::set1(v);
  for_vectors<S>(
      n, [&](size_t i, int) { put<S, kStream>(g + i, S::mul(vk, S::fnma(S::load(es + i), vv, S::load(u + i)))); },
      [&](size_t i, size_t r) {
        S::store_tail(g + i, S::mul(vk, S::fnma(S::load_tail(es + i, r, T(0)), vv, S::load_tail(u + i, r, T(0)))), r);
      });
}

template <class T>
void project(const T* u, const T* es, T* g, size_t n, T k, T v, bool stream) {
  if (stream) {
    split_for_streaming(g, n, [&](size_t b, size_t len, auto streamed) {
      project_part<T, decltype(streamed)::value>(u + b, es + b, g + b, len, k, v);
    });
    Simd<T>::stream_fence();
  } else {
    project_part<T, false>(u, es, g, n, k, v);
  }
}

template <class T>
__attribute__((flatten)) void combine3(const T* x, const T* y, const T* z, T* g, size_t n, T a, T b, T c) {
  using S = Simd<T>;
  using V = typename S::V;
  const V va = S::set1(a), vb = S::set1(b), vc = S::set1(c);
  auto value = [&](V xv, V yv, V zv) { return S::fma(vc, zv, S::fma(vb, yv, S::mul(va, xv))); };
  for_vectors<S>(
      n, [&](size_t i, int) { S::store(g + i, value(S::load(x + i), S::load(y + i), S::load(z + i))); },
      [&](size_t i, size_t r) {
        S::store_tail(g + i, value(S::load_tail(x + i, r, T(0)), S::load_tail(y + i, r, T(0)),
                                   S::load_tail(z + i, r, T(0))), r);
      });
}

template <class T>
__attribute__((flatten)) T weighted_difference_block(const T* w, const T* a, const T* b, size_t n, T ma, T mb) {
  using S = Simd<T>;
  using V = typename S::V;
  const V zero = S::zero(), vma = S::set1(ma), vmb = S::set1(mb);
  V acc[4] = {zero, zero, zero, zero};
  auto term = [&](V wv, V av, V bv) {
    return S::select(S::eq(wv, zero), zero, S::mul(wv, S::sub(S::sub(av, vma), S::sub(bv, vmb))));
  };
  for_vectors<S>(
      n, [&](size_t i, int k) { acc[k] = S::add(acc[k], term(S::load(w + i), S::load(a + i), S::load(b + i))); },
      [&](size_t i, size_t r) {
        acc[0] = S::add(acc[0], term(S::load_tail(w + i, r, T(0)), S::load_tail(a + i, r, T(0)),
                                     S::load_tail(b + i, r, T(0))));
      });
  return S::reduce_add(sum4<T>(acc));
}

template <class T>
double weighted_difference_sum(const T* w, const T* a, const T* b, size_t n, T ma, T mb) {
  BlockSum<T> total;
  for_blocks<T>(n, [&](size_t i, size_t len) {
    total.add(weighted_difference_block<T>(w + i, a + i, b + i, len, ma, mb));
  });
  return total.value();
}

template <class T, bool kStream>
__attribute__((flatten)) void reverse_kl_grad_part(const T* e, const T* s, const T* t, T* g, size_t n, T a, T c, T b,
                                                   T ms, T mt) {
  using S = Simd<T>;
  using V = typename S::V;
  const V va = S::set1(a), vc = S::set1(c), vb = S::set1(b), vms = S::set1(ms), vmt = S::set1(mt), zero = S::zero();
  // p = 0 (a masked student class) adds 0, also where s - t is -inf or NaN
  auto value = [&](V ev, V sv, V tv) {
    const V d = S::sub(S::sub(sv, vms), S::sub(tv, vmt));
    return S::select(S::eq(ev, zero), zero, S::mul(S::mul(va, ev), S::fma(vc, d, vb)));
  };
  for_vectors<S>(
      n, [&](size_t i, int) { put<S, kStream>(g + i, value(S::load(e + i), S::load(s + i), S::load(t + i))); },
      [&](size_t i, size_t r) {
        S::store_tail(g + i, value(S::load_tail(e + i, r, T(0)), S::load_tail(s + i, r, T(0)),
                                   S::load_tail(t + i, r, T(0))), r);
      });
}

template <class T>
void reverse_kl_grad(const T* e, const T* s, const T* t, T* g, size_t n, T a, T c, T b, T ms, T mt, bool stream) {
  if (stream) {
    split_for_streaming(g, n, [&](size_t i, size_t len, auto streamed) {
      reverse_kl_grad_part<T, decltype(streamed)::value>(e + i, s + i, t + i, g + i, len, a, c, b, ms, mt);
    });
    Simd<T>::stream_fence();
  } else {
    reverse_kl_grad_part<T, false>(e, s, t, g, n, a, c, b, ms, mt);
  }
}

template <class T>
DistillKernels<T> make_distill_kernels() {
  DistillKernels<T> k{};
  k.terms = terms<T>;
  k.project = project<T>;
  k.combine3 = combine3<T>;
  k.weighted_difference_sum = weighted_difference_sum<T>;
  k.reverse_kl_grad = reverse_kl_grad<T>;
  return k;
}

}  // namespace distill_impl
}  // namespace LOGITKIT_TARGET
}  // namespace logitkit
