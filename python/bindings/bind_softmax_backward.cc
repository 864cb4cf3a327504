// Bindings for the softmax_backward family (see python/logitkit/softmax_backward.py for the public API).
#include "bind_common.h"

namespace logitkit_py {

void bind_softmax_backward(py::module_& m) { (void)m; }

}  // namespace logitkit_py
