# ctest isa_namespaces: every global symbol defined by the generated <build>/isa/<name>_<isa>.cc
# (one per kernel family and ISA, and the ISA's kernel_table_<isa>.cc) lies in logitkit::<isa>::.
#
# Why: each <family>_<isa>.cc is compiled with its own ISA flags (-mavx512f ...). An inline function,
# template instantiation or std:: helper is emitted as a weak symbol (W, V, u) in every object that
# uses it, and the linker keeps ONE copy for the whole program. If such a symbol is defined both in
# the AVX-512 object and in baseline code (or in another ISA's object), the linker may keep the
# AVX-512 copy, and the scalar path then executes AVX-512 instructions: SIGILL on a CPU without
# them, which no test on an AVX-512 machine can notice. Symbols whose name mentions
# logitkit::<isa>:: (the ISA's own functions, or templates instantiated over its types) are unique to
# that object, so they are safe; any other defined global symbol is a potential collision.
#
# Usage: cmake -DNM=<nm> -DOBJECTS=<a;b;...> -P check_isa_namespaces.cmake
if(NOT NM OR NOT OBJECTS)
  message(FATAL_ERROR "usage: cmake -DNM=nm -DOBJECTS=obj1;obj2 -P check_isa_namespaces.cmake")
endif()

set(checked 0)
set(bad "")
foreach(obj IN LISTS OBJECTS)
  # ISA names have no underscore, family names may: the ISA follows the last one.
  if(NOT obj MATCHES "/isa/([a-z0-9_]+)_([a-z0-9]+)\\.cc\\.(o|obj)$")
    continue()
  endif()
  set(unit ${CMAKE_MATCH_1}_${CMAKE_MATCH_2})
  set(isa ${CMAKE_MATCH_2})
  execute_process(COMMAND ${NM} -C --defined-only ${obj}
                  OUTPUT_VARIABLE listing RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${NM} failed on ${obj}: ${err}")
  endif()
  math(EXPR checked "${checked} + 1")
  string(REPLACE ";" "\\;" listing "${listing}")
  string(REPLACE "\n" ";" lines "${listing}")
  set(count 0)
  foreach(line IN LISTS lines)
    # "<address> <type> <name>"; global (upper-case, GNU unique 'u', ifunc 'i') definitions only:
    # lower-case types are local to the object and cannot be merged with another definition.
    if(NOT line MATCHES "^[0-9a-fA-F]* ([A-TV-Zui]) (.*)$")
      continue()
    endif()
    math(EXPR count "${count} + 1")
    set(name "${CMAKE_MATCH_2}")
    string(FIND "${name}" "logitkit::${isa}::" pos)
    if(pos EQUAL -1)
      string(APPEND bad "  ${isa}: ${line}\n")
    endif()
  endforeach()
  message(STATUS "${unit}: ${count} global symbols checked")
  if(count EQUAL 0)
    message(FATAL_ERROR "no global symbols found in ${obj}: is this the right object file?")
  endif()
endforeach()

if(checked EQUAL 0)
  message(FATAL_ERROR "no <build>/isa/<name>_<isa>.cc object among: ${OBJECTS}")
endif()
if(bad)
  message(FATAL_ERROR "symbols compiled with ISA flags outside their ISA namespace "
                      "(move them into namespace logitkit::<isa>):\n${bad}")
endif()
message(STATUS "isa_namespaces: ${checked} ISA objects clean")
