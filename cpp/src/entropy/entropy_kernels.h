// The entropy family's slot in the dispatch table: fused Shannon entropy of softmax(logits) and the Softmax Collapse fraction.
// ISA-neutral: included by the driver (entropy.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>

namespace logitkit {

// One pass over a row with max m and z = c (x - m), accumulated in double across blocks.
struct EntropySums {
  double untied;  // sum of exp(z) over x != m
  double ties;    // number of x == m (their exp(z) is exactly 1 and z exactly 0)
  double zexp;    // sum of z exp(z) (<= 0)
};

template <class T>
struct EntropyKernels {
  // Function pointers filled per ISA by make_entropy_kernels<T>() in entropy_kernels-inl.h.
  EntropySums (*sums)(const T* x, size_t n, T m, T c);
};

}  // namespace logitkit
