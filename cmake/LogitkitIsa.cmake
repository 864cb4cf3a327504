# Per-ISA kernel translation units, generated here: one per (family, ISA), each compiled with that
# ISA's flags and nothing else is. One TU per family lets the families of an ISA build in parallel
# and an edit to one family's kernels recompile only that family. Never -march=native: one binary
# runs on any CPU of the architecture and picks its kernels at run time (cpp/src/runtime/dispatch.cc).
include(CheckCXXCompilerFlag)

# The kernel families: family F has its slot PerType<FKernels> KernelTable::F (FKernels is F in
# CamelCase, declared in cpp/src/F/F_kernels.h) and its kernels in cpp/src/F/F_kernels-inl.h, which
# defines F_impl::make_F_kernels<T>(). A new family is one line here (and its slot in kernel_table.h).
# Longest compile first: Ninja starts a target's sources in this order, and softmax's TUs (about
# 20 s each, half of the library's compile time) started last would leave one core idle at the end.
set(LOGITKIT_FAMILIES
  softmax
  gemm
  sparsemax
  masked_softmax
  softmax_backward
  stablemax
  math
  entropy
  cross_entropy
  distill
  route
  moe
  nll_loss)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|x64)$")
  set(LOGITKIT_ARCH x86_64)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  set(LOGITKIT_ARCH aarch64)
else()
  set(LOGITKIT_ARCH generic)
endif()

# POPCNT predates AVX2 on every x86 CPU (Nehalem, Barcelona): lane-mask counts are one instruction.
set(LOGITKIT_ISA_FLAGS_avx2 -mavx2 -mfma -mf16c -mbmi2 -mpopcnt)
set(LOGITKIT_ISA_FLAGS_avx512 -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma -mf16c -mbmi2 -mpopcnt)
set(LOGITKIT_ISA_FLAGS_neon "")  # ASIMD is part of the AArch64 baseline
# avx512bf16: AVX-512 plus the bfloat16 dot product (Zen 4, Cooper Lake, Sapphire Rapids). A level
# above avx512 that recompiles only the families with a kernel of their own for it (the others are
# avx512's, the table's slots copied): LOGITKIT_ISA=avx512 on such a CPU still selects plain avx512.
set(LOGITKIT_ISA_FLAGS_avx512bf16 ${LOGITKIT_ISA_FLAGS_avx512} -mavx512bf16)
set(LOGITKIT_BF16_FAMILIES gemm)

set(LOGITKIT_ISA_TEMPLATE_DIR ${CMAKE_CURRENT_LIST_DIR})

# Which SIMD backends to compile besides scalar (always there): "all" of the target architecture
# (avx2;avx512 on x86-64, neon on AArch64), or a list of them, or "none" for a scalar-only build
# (the baseline path alone, e.g. for a sanitizer or portability check; the dispatch table then
# offers scalar only).
set(LOGITKIT_SIMD_BACKENDS all CACHE STRING "SIMD backends to compile besides scalar: all, none, or a list (avx2;avx512 / neon; avx512 brings avx512bf16 where the compiler has -mavx512bf16)")

# Adds the scalar kernels plus every SIMD backend of the target architecture to `target`: for each
# ISA, <build>/isa/<family>_<isa>.cc per family (ISA flags) and <build>/isa/kernel_table_<isa>.cc,
# whose fill_kernel_table calls the families' fillers (no ISA flags: it only makes calls). Call it
# before adding the target's other sources, so that the long kernel TUs start first.
function(logitkit_add_isa_kernels target)
  set(arch_isas "")
  if(LOGITKIT_ARCH STREQUAL "x86_64")
    set(arch_isas avx2 avx512)
  elseif(LOGITKIT_ARCH STREQUAL "aarch64")
    set(arch_isas neon)
  endif()
  set(isas scalar)
  if(LOGITKIT_SIMD_BACKENDS STREQUAL "all")
    list(APPEND isas ${arch_isas})
  elseif(NOT LOGITKIT_SIMD_BACKENDS STREQUAL "none")
    foreach(isa IN LISTS LOGITKIT_SIMD_BACKENDS)
      if(isa STREQUAL "avx512bf16" AND "avx512" IN_LIST arch_isas)  # comes with avx512 (below)
        if(NOT "avx512" IN_LIST LOGITKIT_SIMD_BACKENDS)
          list(APPEND isas avx512)
        endif()
        continue()
      endif()
      if(NOT isa IN_LIST arch_isas)
        message(FATAL_ERROR "LOGITKIT_SIMD_BACKENDS: '${isa}' is not a SIMD backend of ${LOGITKIT_ARCH} "
                            "(choose from: ${arch_isas}; or all, none)")
      endif()
      list(APPEND isas ${isa})
    endforeach()
    list(REMOVE_DUPLICATES isas)
  endif()
  if("avx512" IN_LIST isas)
    check_cxx_compiler_flag(-mavx512bf16 LOGITKIT_COMPILER_HAS_AVX512BF16)
    if(LOGITKIT_COMPILER_HAS_AVX512BF16)
      list(APPEND isas avx512bf16)
    endif()
  endif()
  message(STATUS "logitkit backends: ${isas}")
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/isa)
  set(LOGITKIT_FILL_DECLARATIONS "")
  set(LOGITKIT_FILL_CALLS "")
  foreach(family IN LISTS LOGITKIT_FAMILIES)
    set(LOGITKIT_FAMILY ${family})
    _logitkit_camel_case(${family} LOGITKIT_FAMILY_KERNELS)
    string(APPEND LOGITKIT_FAMILY_KERNELS Kernels)
    foreach(isa IN LISTS isas)
      if(isa STREQUAL "avx512bf16" AND NOT family IN_LIST LOGITKIT_BF16_FAMILIES)
        continue()
      endif()
      set(LOGITKIT_ISA ${isa})
      set(src ${out_dir}/${family}_${isa}.cc)
      configure_file(${LOGITKIT_ISA_TEMPLATE_DIR}/isa_family.cc.in ${src} @ONLY)
      target_sources(${target} PRIVATE ${src})
      # Kernels are always optimized: at -O0 GCC emits out-of-line copies of std:: inline helpers
      # (std::isfinite, numeric_limits, ...) compiled with this ISA's flags, which the linker could
      # hand to the baseline path (the isa_namespaces test checks for such symbols).
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS
        "${LOGITKIT_ISA_FLAGS_${isa}};$<$<CONFIG:Debug>:-O2>")
    endforeach()
    string(APPEND LOGITKIT_FILL_DECLARATIONS
      "void fill_${family}_kernels(PerType<${LOGITKIT_FAMILY_KERNELS}>& slot);\n")
    string(APPEND LOGITKIT_FILL_CALLS "  fill_${family}_kernels(table.${family});\n")
  endforeach()
  set(all_declarations "${LOGITKIT_FILL_DECLARATIONS}")
  set(all_calls "${LOGITKIT_FILL_CALLS}")
  foreach(isa IN LISTS isas)
    set(LOGITKIT_ISA ${isa})
    set(src ${out_dir}/kernel_table_${isa}.cc)
    set(LOGITKIT_FILL_DECLARATIONS "${all_declarations}")
    set(LOGITKIT_FILL_CALLS "${all_calls}")
    if(isa STREQUAL "avx512bf16")  # avx512's table, then the families compiled for this level
      set(LOGITKIT_FILL_DECLARATIONS "")
      set(LOGITKIT_FILL_CALLS "  avx512::fill_kernel_table(table);\n")
      foreach(family IN LISTS LOGITKIT_BF16_FAMILIES)
        _logitkit_camel_case(${family} kernels)
        string(APPEND LOGITKIT_FILL_DECLARATIONS "void fill_${family}_kernels(PerType<${kernels}Kernels>& slot);\n")
        string(APPEND LOGITKIT_FILL_CALLS "  fill_${family}_kernels(table.${family});\n")
      endforeach()
    endif()
    configure_file(${LOGITKIT_ISA_TEMPLATE_DIR}/isa_kernel_table.cc.in ${src} @ONLY)
    target_sources(${target} PRIVATE ${src})
    if(NOT isa STREQUAL "scalar")
      string(TOUPPER ${isa} ISA)
      target_compile_definitions(${target} PRIVATE LOGITKIT_HAVE_${ISA})
    endif()
  endforeach()
  set(LOGITKIT_COMPILED_ISAS ${isas} PARENT_SCOPE)
endfunction()

# masked_softmax -> MaskedSoftmax
function(_logitkit_camel_case name out)
  string(REPLACE "_" ";" words ${name})
  set(result "")
  foreach(word IN LISTS words)
    string(SUBSTRING ${word} 0 1 first)
    string(SUBSTRING ${word} 1 -1 rest)
    string(TOUPPER ${first} first)
    string(APPEND result ${first}${rest})
  endforeach()
  set(${out} ${result} PARENT_SCOPE)
endfunction()
