// The softmax_backward family's slot in the dispatch table: fused vector-Jacobian products of softmax and log_softmax (plain and masked).
// ISA-neutral: included by the driver (softmax_backward.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>

namespace logitkit {

template <class T>
struct SoftmaxBackwardKernels {
  // Function pointers filled per ISA by make_softmax_backward_kernels<T>() in softmax_backward_kernels-inl.h.
};

}  // namespace logitkit
