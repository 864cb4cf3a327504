// Every kernel instantiated for the scalar backend; the only file compiled with scalar's flags.
#include "simd/vec_scalar-inl.h"
#include "isa/all_kernels-inl.h"
