# Per-ISA kernel translation units: each cpp/src/isa/kernels_<isa>.cc is compiled with its own ISA
# flags and nothing else is. Never -march=native: one binary runs on any CPU of the architecture and
# picks its kernels at run time (cpp/src/runtime/dispatch.cc).
include(CheckCXXCompilerFlag)

set(LOGITKIT_ISA_DIR ${CMAKE_CURRENT_LIST_DIR}/../cpp/src/isa)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|x64)$")
  set(LOGITKIT_ARCH x86_64)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  set(LOGITKIT_ARCH aarch64)
else()
  set(LOGITKIT_ARCH generic)
endif()

set(LOGITKIT_ISA_FLAGS_avx2 -mavx2 -mfma -mf16c -mbmi2)
set(LOGITKIT_ISA_FLAGS_avx512 -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma -mf16c -mbmi2)
set(LOGITKIT_ISA_FLAGS_neon "")  # ASIMD is part of the AArch64 baseline

# Adds the scalar kernels plus every SIMD backend of the target architecture to `target`.
function(logitkit_add_isa_kernels target)
  set(isas scalar)
  if(LOGITKIT_ARCH STREQUAL "x86_64")
    list(APPEND isas avx2 avx512)
  elseif(LOGITKIT_ARCH STREQUAL "aarch64")
    list(APPEND isas neon)
  endif()
  foreach(isa IN LISTS isas)
    set(src ${LOGITKIT_ISA_DIR}/kernels_${isa}.cc)
    target_sources(${target} PRIVATE ${src})
    # Kernels are always optimized: at -O0 GCC emits out-of-line copies of std:: inline helpers
    # (std::isfinite, numeric_limits, ...) compiled with this ISA's flags, which the linker could
    # hand to the baseline path (the isa_namespaces test checks for such symbols).
    set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS
      "${LOGITKIT_ISA_FLAGS_${isa}};$<$<CONFIG:Debug>:-O2>")
    if(NOT isa STREQUAL "scalar")
      string(TOUPPER ${isa} ISA)
      target_compile_definitions(${target} PRIVATE LOGITKIT_HAVE_${ISA})
    endif()
  endforeach()
  set(LOGITKIT_COMPILED_ISAS ${isas} PARENT_SCOPE)
endfunction()
