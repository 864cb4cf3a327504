// Compiled (syntax only) by check_unsupported_element.cmake once per op, with LOGITKIT_TEST_CALL one
// call of it: with an element type the library is not built for (long double), every op template
// must stop the compile with its static_assert, not leave an undefined symbol for the linker.
#include <logitkit/logitkit.h>

#include <cstdint>

using namespace logitkit;
using T = long double;

void call(ArrayView<const T> x, ArrayView<T> y, ArrayView<T> out, ArrayView<const uint8_t> mask) {
  (void)x, (void)y, (void)out, (void)mask;
  LOGITKIT_TEST_CALL;
}
