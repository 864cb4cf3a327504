// The avx512bf16 level's vector layer: AVX-512's, compiled with -mavx512bf16, which puts it in
// namespace logitkit::avx512bf16 and adds Simd<float>'s bfloat16 pair dot product (kBf16Dot).
// Included only by <build>/isa/*_avx512bf16.cc (the families in LOGITKIT_BF16_FAMILIES).
#pragma once
#if !defined(__AVX512BF16__)
#error "the avx512bf16 translation units are compiled with -mavx512bf16"
#endif
#include "simd/vec_avx512-inl.h"
