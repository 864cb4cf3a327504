# ctest baseline_instructions (x86-64): the objects compiled without ISA flags (the runtime, the
# drivers, and the scalar kernels <build>/isa/*_scalar.cc) contain no instruction beyond the
# x86-64 baseline, so the dispatch code and the scalar path run on any x86-64 CPU (.ci/run also
# runs the installed wheel under qemu-x86_64 -cpu Nehalem). VEX/EVEX-encoded instructions (AVX,
# AVX2, FMA, AVX-512, F16C: every mnemonic starting with "v" but verr/verw) and the BMI/LZCNT
# extras are what a stray -m flag or a misplaced inline function would bring in.
#
# Usage: cmake -DOBJDUMP=<objdump> -DOBJECTS=<a;b;...> -P check_baseline_instructions.cmake
if(NOT OBJDUMP OR NOT OBJECTS)
  message(FATAL_ERROR "usage: cmake -DOBJDUMP=objdump -DOBJECTS=obj1;obj2 -P check_baseline_instructions.cmake")
endif()
set(checked 0)
set(bad "")
foreach(obj IN LISTS OBJECTS)
  # Skip the per-ISA kernel objects of the SIMD backends: they are meant to hold such instructions.
  if(obj MATCHES "/isa/[a-z0-9_]+_([a-z0-9]+)\\.cc\\.(o|obj)$" AND NOT CMAKE_MATCH_1 STREQUAL "scalar")
    continue()
  endif()
  execute_process(COMMAND ${OBJDUMP} -d --no-show-raw-insn ${obj}
                  OUTPUT_VARIABLE listing RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${OBJDUMP} failed on ${obj}: ${err}")
  endif()
  math(EXPR checked "${checked} + 1")
  # Lines look like "  1f:\tvmovups %ymm0,(%rdi)": the mnemonic follows the tab after the address.
  string(REGEX MATCHALL "\t(v[a-z0-9]+|andn|bextr|blsi|blsmsk|blsr|bzhi|lzcnt|tzcnt|pdep|pext|rorx|sarx|shlx|shrx|mulx)[ \n]"
         found "${listing}")
  list(FILTER found EXCLUDE REGEX "\t(verr|verw)[ \n]")
  if(found)
    list(REMOVE_DUPLICATES found)
    string(REPLACE "\t" "" found "${found}")
    string(REPLACE "\n" "" found "${found}")
    string(APPEND bad "  ${obj}: ${found}\n")
  endif()
endforeach()
if(checked EQUAL 0)
  message(FATAL_ERROR "no baseline object checked: OBJECTS holds no .o files?")
endif()
if(bad)
  message(FATAL_ERROR "instructions beyond the x86-64 baseline in baseline objects:\n${bad}")
endif()
message(STATUS "${checked} baseline objects hold x86-64 baseline instructions only")
