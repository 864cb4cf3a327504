// The sparsemax family's slot in the dispatch table: sparsemax, entmax-1.5 and entmax-bisect forward and backward.
// ISA-neutral: included by the driver (sparsemax.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>

namespace logitkit {

template <class T>
struct SparsemaxKernels {
  // Function pointers filled per ISA by make_sparsemax_kernels<T>() in sparsemax_kernels-inl.h.
};

}  // namespace logitkit
