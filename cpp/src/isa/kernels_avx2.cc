// Every kernel instantiated for the avx2 backend; the only file compiled with avx2's flags.
#include "simd/vec_avx2-inl.h"
#include "isa/all_kernels-inl.h"
