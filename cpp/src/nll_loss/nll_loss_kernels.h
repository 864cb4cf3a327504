// The nll_loss family's slot in the dispatch table: the gradient rows of a loss whose gradient
// has one nonzero per row (nll_loss; the loss itself is one gather per row, done by the driver).
// ISA-neutral: included by the driver (nll_loss.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>
#include <cstdint>

namespace logitkit {

template <class T>
struct NllLossKernels {
  // Function pointers filled per ISA by make_nll_loss_kernels<T>() in nll_loss_kernels-inl.h.
  // Row t of g (rows of n at stride ldg): value[t] at index[t] and 0 elsewhere; index[t] < 0 or
  // >= n: all 0. With `stream`, non-temporal stores (outputs far beyond the last-level cache).
  void (*one_hot_rows)(T* g, size_t rows, size_t n, ptrdiff_t ldg, const int64_t* index, const T* value,
                       bool stream);
};

}  // namespace logitkit
