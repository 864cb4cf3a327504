// The cross_entropy family's slot in the dispatch table: the label-smoothing sum and the gradient
// rows of softmax cross-entropy (the row max and exp values come from the softmax slot).
// ISA-neutral: included by the driver (cross_entropy.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>

namespace logitkit {

template <class T>
struct CrossEntropyKernels {
  // Function pointers filled per ISA by make_cross_entropy_kernels<T>() in cross_entropy_kernels-inl.h.
  // sum_c w_c (x_c - m) in double (w null: all 1), blocks added by BlockSum.
  double (*shifted_dot)(const T* x, const T* w, size_t n, T m);
  // g_c = alpha e_c - gamma w_c (w null: - gamma), and g_index -= delta in the same store
  // (index >= n: none); e may be g. Streaming stores with `stream`.
  void (*grad_from_exp)(const T* e, const T* w, T* g, size_t n, T alpha, T gamma, size_t index, T delta, bool stream);
};

}  // namespace logitkit
