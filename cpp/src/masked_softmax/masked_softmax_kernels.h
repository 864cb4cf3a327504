// The masked_softmax family's slot in the dispatch table: softmax / log_softmax restricted to the
// positions where a byte mask is nonzero (NumPy where=). ISA-neutral: included by the driver
// (masked_softmax.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>
#include <cstdint>

namespace logitkit {

template <class T>
struct MaskedSoftmaxKernels {
  // Whole rows of length n: row r of x, mask and y starts at x + r * ldx, m + r * ldm, y + r * ldy
  // (ldm may be 0: one mask row shared by every row). c = 1 / temperature.
  // Excluded positions get 0 (softmax) / -inf (log_softmax), whatever x holds there; a row with no
  // included position gives all 0 / all -inf.
  void (*softmax_rows)(const T* x, const uint8_t* m, T* y, size_t rows, size_t n, ptrdiff_t ldx,
                       ptrdiff_t ldm, ptrdiff_t ldy, T c);
  void (*log_softmax_rows)(const T* x, const uint8_t* m, T* y, size_t rows, size_t n, ptrdiff_t ldx,
                           ptrdiff_t ldm, ptrdiff_t ldy, T c);
};

}  // namespace logitkit
