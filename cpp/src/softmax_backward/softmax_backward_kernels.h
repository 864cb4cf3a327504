// The softmax_backward family's slot in the dispatch table: fused vector-Jacobian products of
// softmax and log_softmax, plain and masked. ISA-neutral: included by the driver
// (softmax_backward.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>
#include <cstdint>

namespace logitkit {

template <class T>
struct SoftmaxBackwardKernels {
  // Whole rows of length n; row r of each operand starts at base + r * ld<operand>. m (the mask,
  // nonzero = included) may be null for the plain ops; ldm may be 0 (one mask row for all rows).
  // c = 1 / temperature of the forward pass. dx may alias y or dy exactly.
  //   softmax:      dx = c y (dy - sum(y dy))
  //   log_softmax:  dx = c (dy - exp(y) sum(dy))
  // Masked: the sums run over included positions only and excluded positions get dx = 0.
  // stream: write dx with non-temporal stores (outputs far beyond the last-level cache).
  void (*softmax_backward_rows)(const T* y, const T* dy, const uint8_t* m, T* dx, size_t rows, size_t n,
                                ptrdiff_t ldy, ptrdiff_t lddy, ptrdiff_t ldm, ptrdiff_t lddx, T c, bool stream);
  void (*log_softmax_backward_rows)(const T* y, const T* dy, const uint8_t* m, T* dx, size_t rows, size_t n,
                                    ptrdiff_t ldy, ptrdiff_t lddy, ptrdiff_t ldm, ptrdiff_t lddx, T c, bool stream);
};

}  // namespace logitkit
