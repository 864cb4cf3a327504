// sparsemax ops of the C++ API.
#pragma once
#include "logitkit/export.h"
#include "logitkit/view.h"

namespace logitkit {}  // namespace logitkit
