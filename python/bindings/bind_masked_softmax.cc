// Bindings for the masked_softmax family (see python/logitkit/masked_softmax.py for the public API).
#include "bind_common.h"

namespace logitkit_py {

void bind_masked_softmax(py::module_& m) { (void)m; }

}  // namespace logitkit_py
