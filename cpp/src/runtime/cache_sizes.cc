// Cache sizes as one core sees them, read once. Linux describes each cache level of cpu0 in sysfs
// with its real size; glibc's sysconf(_SC_LEVEL3_CACHE_SIZE) can report something else under a
// hypervisor (320 MiB on a 2-vCPU Zen 4 VM whose cores share one 32 MiB L3), which kept outputs
// from 32 MiB to 320 MiB off the streaming stores meant for them.
#include "runtime/cache_sizes.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "logitkit/runtime.h"

namespace logitkit {
namespace {

// The first line of a sysfs file, without the newline; empty when unreadable.
std::string read_line(const std::string& path) {
  std::string out;
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    char buf[64];
    if (std::fgets(buf, sizeof buf, f)) out = buf;
    std::fclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// "32768K", "1M" or a plain number of bytes; 0 when malformed.
size_t parse_size(const std::string& s) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (end == s.c_str()) return 0;
  const std::string unit(end);
  if (unit.empty()) return static_cast<size_t>(v);
  if (unit == "K") return static_cast<size_t>(v) << 10;
  if (unit == "M") return static_cast<size_t>(v) << 20;
  if (unit == "G") return static_cast<size_t>(v) << 30;
  return 0;
}

// {size of the data/unified cache at `level`, or 0}; {highest level found, its size} for level 0.
struct SysfsCache {
  int level;
  size_t bytes;
};
SysfsCache sysfs_cache(int level) {
  SysfsCache best{0, 0};
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    const std::string lv = read_line(dir + "level");
    if (lv.empty()) break;
    if (read_line(dir + "type") == "Instruction") continue;
    const int l = std::atoi(lv.c_str());
    const size_t bytes = parse_size(read_line(dir + "size"));
    if (bytes == 0) continue;
    if (level ? l == level : l > best.level) best = {l, bytes};
  }
  return best;
}

size_t sysconf_bytes(int name) {
  const long s = sysconf(name);
  return s > 0 ? static_cast<size_t>(s) : 0;
}

}  // namespace

size_t l2_cache_bytes() {
  static const size_t bytes = [] {
    if (size_t b = sysfs_cache(2).bytes) return b;
#ifdef _SC_LEVEL2_CACHE_SIZE
    if (size_t b = sysconf_bytes(_SC_LEVEL2_CACHE_SIZE)) return b;
#endif
    return size_t{1} << 20;
  }();
  return bytes;
}

size_t last_level_cache_bytes() {
  static const size_t bytes = [] {
    if (size_t b = sysfs_cache(0).bytes) return b;
#ifdef _SC_LEVEL3_CACHE_SIZE
    if (size_t b = sysconf_bytes(_SC_LEVEL3_CACHE_SIZE)) return b;
    if (size_t b = sysconf_bytes(_SC_LEVEL2_CACHE_SIZE)) return b;
#endif
    return size_t{32} << 20;
  }();
  return bytes;
}

}  // namespace logitkit
