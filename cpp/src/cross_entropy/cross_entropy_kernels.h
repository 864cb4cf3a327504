// The cross_entropy family's slot in the dispatch table: the row sums and gradient rows of softmax
// cross-entropy beyond what the softmax slot gives (the row max and exp values come from there).
// ISA-neutral: included by the driver (cross_entropy.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>

namespace logitkit {

// Two sums of one row, each added over blocks in double.
struct SoftDots {
  double weight;   // sum_c w_c y_c
  double shifted;  // sum_c w_c y_c (x_c - m), terms with y_c == 0 left out (x_c may be -inf)
};

// The gradient row g_c = f_c (alpha e_c - w_c (beta y_c + gamma)) - [c == index] delta, with w, y
// null read as 1 and 0, and f_c = 1 - (capped_c * inv_cap)^2 (the softcap's tanh derivative) when
// capped is given, else 1.
template <class T>
struct GradCoeffs {
  T alpha, beta, gamma, delta, inv_cap;
  size_t index;  // >= n: no target correction
};

template <class T>
struct CrossEntropyKernels {
  // Function pointers filled per ISA by make_cross_entropy_kernels<T>() in cross_entropy_kernels-inl.h.
  // sum_c w_c (x_c - m) in double (w null: all 1), blocks added by BlockSum.
  double (*shifted_dot)(const T* x, const T* w, size_t n, T m);
  // Soft targets' sums (w null: all 1).
  SoftDots (*soft_dots)(const T* x, const T* y, const T* w, size_t n, T m);
  // The gradient row (see GradCoeffs) from the row's exp values e, which may be g itself.
  // Streaming stores with `stream`.
  void (*grad)(const T* e, const T* y, const T* w, const T* capped, T* g, size_t n, const GradCoeffs<T>& k,
               bool stream);
  // y = cap tanh(x / cap) (Gemma 2's logit softcap), y may be x; -+inf -> -+cap, NaN stays NaN.
  void (*softcap)(const T* x, T* y, size_t n, T cap);
  // The first index i with x_i == v (v NaN: the first NaN), n when there is none: with v the row
  // max, the argmax with ties to the lowest index (NaN counted largest, as torch.argmax).
  size_t (*find_first)(const T* x, size_t n, T v);
  // sum_c (x_c - mu)^2 in double (spherical_z_loss's variance, after its mean)
  double (*centered_square_sum)(const T* x, size_t n, T mu);
};

}  // namespace logitkit
