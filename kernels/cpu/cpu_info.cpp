// What the CPU backend reports about its machine, read from /proc and /sys (Linux); fallbacks elsewhere.
#include <cctype>
#include <fstream>
#include <string>

#include "kernels/cpu/ops.hpp"

namespace moesim::kernels::cpu {
namespace {

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// "48K", "2048K", "32M" (sysfs cache sizes): bytes, or 0.
std::size_t parse_size(const std::string& text) {
  std::size_t value = 0;
  std::size_t i = 0;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0; ++i)
    value = value * 10 + static_cast<std::size_t>(text[i] - '0');
  if (i == 0) return 0;
  if (i < text.size() && (text[i] == 'K' || text[i] == 'k')) return value << 10;
  if (i < text.size() && text[i] == 'M') return value << 20;
  if (i < text.size() && text[i] == 'G') return value << 30;
  return value;
}

}  // namespace

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) break;
    const auto start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? "unknown CPU" : line.substr(start);
  }
  return "unknown CPU";
}

std::size_t last_level_cache_bytes() {
  int best_level = 0;
  std::size_t best_bytes = 0;
  for (int index = 0; index < 16; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
    const std::string level = read_line(dir + "level");
    if (level.empty()) break;
    if (read_line(dir + "type") == "Instruction") continue;
    const int lvl = std::stoi(level);
    const std::size_t bytes = parse_size(read_line(dir + "size"));
    if (lvl > best_level || (lvl == best_level && bytes > best_bytes)) {
      best_level = lvl;
      best_bytes = bytes;
    }
  }
  return best_bytes;
}

}  // namespace moesim::kernels::cpu
