// The distill family's slot in the dispatch table: the elementwise terms and the gradient rows of
// the divergences between a student's and a teacher's softmax (kl_div, jsd, tvd). The row maxima
// and exp values come from the softmax slot. ISA-neutral: included by the driver (distill.cc) and
// by runtime/kernel_table.h.
#pragma once
#include <cstddef>
#include <cstdint>

namespace logitkit {

enum class DivergenceKind : uint8_t { kForwardKL, kReverseKL, kJSD, kTVD };

// One row's constants: p = es * inv_sum_s, log p = c (s - max_s) - log_sum_s, and likewise q, t
// for the teacher; beta the JSD mixture weight (m = beta q + (1 - beta) p).
template <class T>
struct DivergenceRow {
  T c, max_s, max_t, inv_sum_s, inv_sum_t, log_sum_s, log_sum_t, beta;
};

struct DivergenceSums {
  double loss;  // sum_i of the divergence's terms
  double u;     // sum_i u_i, u_i = d loss / d log p_i before the softmax's projection
};

template <class T>
struct DistillKernels {
  // Function pointers filled per ISA by make_distill_kernels<T>() in distill_kernels-inl.h.
  // The divergence's terms from the rows' exp values (es, et) and logits (s, t); with u given,
  // also stores u_i there. Terms with a zero probability where 0 log 0 = 0 add nothing. kind:
  // kForwardKL (dkd_loss's NCKD), kJSD or kTVD (kl_div itself has closed forms in the driver).
  DivergenceSums (*terms)(DivergenceKind kind, const T* es, const T* et, const T* s, const T* t, T* u, size_t n,
                          const DivergenceRow<T>& row);
  // g = k (u - es * v): the gradient with respect to the student's logits (v = inv_sum_s * sum u),
  // streaming stores with `stream`.
  void (*project)(const T* u, const T* es, T* g, size_t n, T k, T v, bool stream);
  // sum_i w_i ((a_i - ma) - (b_i - mb)) over w_i != 0, in double (the forward KL's sum of
  // q (t - s), with masked classes, w = 0, adding nothing even where a or b is -inf). ma and mb are
  // the rows' maxima: (t - s) itself can be huge where the distributions are close (a row offset
  // by 1e5 from the other), and its sum then cancels against the maxima's gap in float
  double (*weighted_difference_sum)(const T* w, const T* a, const T* b, size_t n, T ma, T mb);
  // g = a e (c ((s - ms) - (t - mt)) + b): the reverse KL's gradient a p (log p - log q - KL) from
  // the student's exp row (the maxima keep the bracket's terms small); streaming with `stream`
  void (*reverse_kl_grad)(const T* e, const T* s, const T* t, T* g, size_t n, T a, T c, T b, T ms, T mt,
                          bool stream);
  // g = a x + b y + c z (nkd_loss's and dkd_loss's gradient rows from three stored exp rows)
  void (*combine3)(const T* x, const T* y, const T* z, T* g, size_t n, T a, T b, T c);
};

}  // namespace logitkit
