// The masked_softmax family's slot in the dispatch table: masked softmax / log_softmax (NumPy where= masks; all-masked rows give zeros).
// ISA-neutral: included by the driver (masked_softmax.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>

namespace logitkit {

template <class T>
struct MaskedSoftmaxKernels {
  // Function pointers filled per ISA by make_masked_softmax_kernels<T>() in masked_softmax_kernels-inl.h.
};

}  // namespace logitkit
