// Bindings for the entropy family (see python/logitkit/entropy.py for the public API).
#include "bind_common.h"

namespace logitkit_py {

void bind_entropy(py::module_& m) { (void)m; }

}  // namespace logitkit_py
