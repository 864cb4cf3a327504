// Every kernel instantiated for the avx512 backend; the only file compiled with avx512's flags.
#include "simd/vec_avx512-inl.h"
#include "isa/all_kernels-inl.h"
