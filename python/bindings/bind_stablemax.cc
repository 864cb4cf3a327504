// Bindings for the stablemax family (see python/logitkit/stablemax.py for the public API).
#include "bind_common.h"

namespace logitkit_py {

void bind_stablemax(py::module_& m) { (void)m; }

}  // namespace logitkit_py
