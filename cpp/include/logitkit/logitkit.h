// Umbrella header: everything a C++ service needs to call logitkit.
#pragma once
#include "logitkit/entropy.h"
#include "logitkit/error.h"
#include "logitkit/masked_softmax.h"
#include "logitkit/math.h"
#include "logitkit/runtime.h"
#include "logitkit/softmax.h"
#include "logitkit/softmax_backward.h"
#include "logitkit/sparsemax.h"
#include "logitkit/stablemax.h"
#include "logitkit/version.h"
#include "logitkit/view.h"
