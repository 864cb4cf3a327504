// The stablemax family's slot in the dispatch table: StableMax and log-StableMax (grokking paper) forward and backward.
// ISA-neutral: included by the driver (stablemax.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>

namespace logitkit {

template <class T>
struct StablemaxKernels {
  // Function pointers filled per ISA by make_stablemax_kernels<T>() in stablemax_kernels-inl.h.
};

}  // namespace logitkit
