// Bindings for the sparsemax family (see python/logitkit/sparsemax.py for the public API).
#include "bind_common.h"

namespace logitkit_py {

void bind_sparsemax(py::module_& m) { (void)m; }

}  // namespace logitkit_py
