// The entropy family's slot in the dispatch table: fused Shannon entropy of softmax(logits) and the Softmax Collapse fraction.
// ISA-neutral: included by the driver (entropy.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>

namespace logitkit {

template <class T>
struct EntropyKernels {
  // Function pointers filled per ISA by make_entropy_kernels<T>() in entropy_kernels-inl.h.
};

}  // namespace logitkit
