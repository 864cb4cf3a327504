// Every kernel instantiated for the neon backend; the only file compiled with neon's flags.
#include "simd/vec_neon-inl.h"
#include "isa/all_kernels-inl.h"
