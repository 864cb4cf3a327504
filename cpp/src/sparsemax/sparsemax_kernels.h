// The sparsemax family's slot in the dispatch table: sparsemax, entmax-1.5 and entmax-bisect forward and backward.
// ISA-neutral: included by the driver (sparsemax.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>

namespace logitkit {

// Elements of scratch a forward kernel needs beyond the row length: compress_store may write one
// whole vector past the kept candidates (64 covers every ISA's lane count).
inline constexpr size_t kSparsemaxScratchSlack = 64;

template <class T>
struct SparsemaxKernels {
  // Whole rows of length n: row r starts at x + r * ldx (y + r * ldy). c scales x (1/temperature);
  // scratch holds n + kSparsemaxScratchSlack elements (the candidates of one row).
  void (*sparsemax_rows)(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c,
                         T* scratch);
  void (*entmax15_rows)(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c,
                        T* scratch);
  // alpha > 1; at most n_iter bisection steps (as the entmax package), then normalized.
  void (*entmax_bisect_rows)(const T* x, T* y, size_t rows, size_t n, ptrdiff_t ldx, ptrdiff_t ldy, T c,
                             T alpha, int n_iter, T* scratch);
  // VJPs dx = c (g dy - g sum(g dy) / sum(g)) with g = [y > 0], sqrt(y), y^(2 - alpha) (0 at y = 0);
  // scratch holds n elements (g, when it is costly to recompute).
  void (*sparsemax_backward_rows)(const T* y, const T* dy, T* dx, size_t rows, size_t n, ptrdiff_t ldy,
                                  ptrdiff_t lddy, ptrdiff_t lddx, T c, T* scratch);
  void (*entmax15_backward_rows)(const T* y, const T* dy, T* dx, size_t rows, size_t n, ptrdiff_t ldy,
                                 ptrdiff_t lddy, ptrdiff_t lddx, T c, T* scratch);
  void (*entmax_bisect_backward_rows)(const T* y, const T* dy, T* dx, size_t rows, size_t n, ptrdiff_t ldy,
                                      ptrdiff_t lddy, ptrdiff_t lddx, T c, T alpha, T* scratch);
};

}  // namespace logitkit
