// logitkit version: the single source of truth, parsed by CMake and pyproject.toml.
#pragma once
#define LOGITKIT_VERSION "0.1.0"
