# ctest unsupported_element: every public op template called with T = long double must fail to
# compile with its own static_assert ("logitkit::<op>: T must be float or double"), where it used to
# compile and fail at link time. Compiles unsupported_element.cc once per op, syntax only.
# Usage: cmake -DCXX= [-DSTD_FLAG=] -DINCLUDE_DIR= -DSOURCE= -DCXX_ID= -P check_unsupported_element.cmake
set(calls
  "softmax|softmax(x, y, -1)"
  "log_softmax|log_softmax(x, y, -1)"
  "logsumexp|logsumexp(x, out, -1)"
  "masked_softmax|masked_softmax(x, mask, y, -1)"
  "masked_log_softmax|masked_log_softmax(x, mask, y, -1)"
  "softmax_backward|softmax_backward(x, x, y, -1)"
  "log_softmax_backward|log_softmax_backward(x, x, y, -1)"
  "masked_softmax_backward|masked_softmax_backward(x, x, mask, y, -1)"
  "masked_log_softmax_backward|masked_log_softmax_backward(x, x, mask, y, -1)"
  "entropy|entropy(x, out, -1)"
  "collapse_fraction|collapse_fraction(x, -1, CollapseDtype::kFloat64)"
  "collapse_fraction|collapse_fraction(y, -1, CollapseDtype::kFloat64)"
  "sparsemax|sparsemax(x, y, -1)"
  "entmax15|entmax15(x, y, -1)"
  "entmax_bisect|entmax_bisect(x, y, -1)"
  "sparsemax_backward|sparsemax_backward(x, x, y, -1)"
  "entmax15_backward|entmax15_backward(x, x, y, -1)"
  "entmax_bisect_backward|entmax_bisect_backward(x, x, y, -1)"
  "stablemax|stablemax(x, y, -1)"
  "log_stablemax|log_stablemax(x, y, -1)"
  "stablemax_backward|stablemax_backward(x, x, y, -1)"
  "log_stablemax_backward|log_stablemax_backward(x, x, y, -1)"
  "softmax|softmax<long double>(y, y, -1)")
if(CXX_ID STREQUAL "MSVC")
  set(syntax_only /Zs /nologo)
  set(define /D)
else()
  set(syntax_only -fsyntax-only)
  set(define -D)
endif()
set(bad 0)
foreach(entry IN LISTS calls)
  string(REPLACE "|" ";" entry "${entry}")
  list(GET entry 0 op)
  list(GET entry 1 call)
  execute_process(COMMAND ${CXX} ${STD_FLAG} ${syntax_only} -I${INCLUDE_DIR} "${define}LOGITKIT_TEST_CALL=${call}"
                          ${SOURCE}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(FIND "${out}${err}" "logitkit::${op}: T must be float or double" at)
  if(rc EQUAL 0 OR at EQUAL -1)
    message(SEND_ERROR "${call} with T = long double: expected a compile error with the static_assert "
                       "\"logitkit::${op}: T must be float or double\", got exit code ${rc}:\n${out}${err}")
    math(EXPR bad "${bad} + 1")
  else()
    message(STATUS "${call}: static_assert, as expected")
  endif()
endforeach()
if(bad)
  message(FATAL_ERROR "${bad} call(s) with an unsupported element type did not stop at their static_assert")
endif()
