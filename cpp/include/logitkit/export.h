// Symbol visibility for the public C++ API (the library is built with hidden visibility).
#pragma once
#if defined(LOGITKIT_STATIC_DEFINE) || !defined(LOGITKIT_SHARED)
#define LOGITKIT_API
#elif defined(_WIN32)
#ifdef LOGITKIT_BUILDING
#define LOGITKIT_API __declspec(dllexport)
#else
#define LOGITKIT_API __declspec(dllimport)
#endif
#else
#define LOGITKIT_API __attribute__((visibility("default")))
#endif
