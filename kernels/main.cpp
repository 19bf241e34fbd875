// moesim-kernels: validates and times moesim's MoE kernels on a backend (cpu or cuda). The only place where an error
// becomes an exit code: 2 for bad input (a flag, or a backend this machine cannot run), 1 for a failed validation
// or an internal error.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/backend.hpp"
#include "kernels/config.hpp"
#include "kernels/harness/bench.hpp"
#include "kernels/harness/collectives.hpp"
#include "kernels/harness/measurements_io.hpp"
#include "kernels/harness/validate.hpp"

namespace moesim::kernels {
namespace {

constexpr const char* kHelp = R"(moesim-kernels: validate and time moesim's MoE kernels

usage: moesim-kernels validate [OPTIONS]
       moesim-kernels bench [OPTIONS]

commands:
  validate    run every op (router, permute, grouped_ffn, dense_gemm, unpermute) on seeded inputs over a table of
              shapes (degenerate ones included) and compare with FP64 references: exact for data movement, a
              normalised error within a per-dtype tolerance for reductions; then the NCCL all-to-all ops
              (nccl_alltoall, nccl_alltoallv), every received chunk compared exactly with what its sender put
              there; prints a pass/fail table; exit code 1 if any check fails
  bench       time every op over a sweep of sizes (tokens, hidden, experts, top-k, FFN width, skew, capacity) with
              inputs rotated over 3x the last-level cache; prints min/median/max, TFLOP/s and GB/s; then
              nccl_alltoall and nccl_alltoallv (Zipf-uneven per-peer sizes) over every GPU, 1 to 256 MiB per rank,
              with algbw and busbw as nccl-tests reports them

The nccl_* ops run only with --backend cuda, on 2 or more GPUs, in a build with NCCL; elsewhere they are listed
as skipped with the reason (never as passed, never as a measurement).

options:
  --backend cpu|cuda   where the kernels run (default cpu)
  --device N           the GPU to use with --backend cuda (default 0)
  --threads N          CPU backend threads (default: every hardware thread); results do not depend on it
  --seed N             random seed for the inputs (default 1)
  --quick              validate: the quick shape table; bench: a few small points (CI)
  --ops LIST           bench: only these ops, comma-separated (router, permute, grouped_ffn, dense_gemm,
                       unpermute, nccl_alltoall, nccl_alltoallv)
  --format text|json   what goes to stdout (default text; bench json is the Measurements as proto3 JSON)
  --out FILE           validate: also write the output to FILE; bench: write the Measurements to FILE (binary
                       protobuf, or proto3 JSON when FILE ends in .json) and a CSV beside it (FILE.csv)
  --help               show this help
)";

struct Option {
  bool takes_value;
};

const std::map<std::string, Option>& options() {
  static const std::map<std::string, Option> declared = {{"backend", {true}}, {"device", {true}}, {"threads", {true}},
                                                         {"seed", {true}},    {"quick", {false}}, {"ops", {true}},
                                                         {"format", {true}},  {"out", {true}},    {"help", {false}}};
  return declared;
}

struct Args {
  std::string command;
  std::map<std::string, std::string> values;

  std::optional<std::string> get(const std::string& name) const {
    const auto it = values.find(name);
    return it == values.end() ? std::nullopt : std::optional<std::string>(it->second);
  }
  bool has(const std::string& name) const { return values.count(name) > 0; }
};

Args parse(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) {
      if (!args.command.empty())
        throw std::invalid_argument("unexpected argument '" + arg + "' (the command is already " + args.command + ")");
      args.command = arg;
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    const auto it = options().find(name);
    if (it == options().end()) throw std::invalid_argument("--" + name + ": unknown option (see --help)");
    if (it->second.takes_value && !value) {
      if (i + 1 >= argc) throw std::invalid_argument("--" + name + ": expected a value");
      value = argv[++i];
    }
    if (!it->second.takes_value && value) throw std::invalid_argument("--" + name + ": takes no value");
    args.values[name] = value.value_or("");
  }
  return args;
}

long long integer(const Args& args, const std::string& name, long long fallback, long long min, long long max) {
  const auto text = args.get(name);
  if (!text) return fallback;
  std::size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(*text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text->size() || value < min || value > max)
    throw std::invalid_argument("--" + name + ": expected an integer in [" + std::to_string(min) + ", " +
                                std::to_string(max) + "], got '" + *text + "'");
  return value;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts;
  std::string part;
  for (const char c : text + ",") {
    if (c != ',') {
      part += c;
    } else if (!part.empty()) {
      parts.push_back(part);
      part.clear();
    }
  }
  return parts;
}

// Progress on stderr: one line rewritten in place on a terminal; whole lines otherwise when `always`.
class ProgressLine {
 public:
  explicit ProgressLine(bool always) : is_tty_(isatty(STDERR_FILENO) == 1), enabled_(is_tty_ || always) {}
  ~ProgressLine() { finish(); }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  void operator()(const std::string& line) {
    if (!enabled_) return;
    if (is_tty_) {
      std::fprintf(stderr, "\r\033[K%s", line.c_str());
      is_dirty_ = true;
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }
  void finish() {
    if (is_dirty_) std::fprintf(stderr, "\r\033[K");
    is_dirty_ = false;
  }

 private:
  bool is_tty_;
  bool enabled_;
  bool is_dirty_ = false;
};

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error(path + ": cannot write");
}

// The backend, or a bad-input error (exit 2) saying why it cannot run here.
std::unique_ptr<Backend> make_backend(const Args& args) {
  const std::string name = args.get("backend").value_or("cpu");
  const auto threads = static_cast<int>(integer(args, "threads", 0, 1, 4096));
  const auto device = static_cast<int>(integer(args, "device", 0, 0, 1023));
  if (name == "cpu") {
    if (args.has("device")) throw std::invalid_argument("--device: only with --backend cuda");
    return make_cpu_backend(threads);
  }
  if (name != "cuda") throw std::invalid_argument("--backend: expected cpu or cuda, got '" + name + "'");
  if (args.has("threads")) throw std::invalid_argument("--threads: only with --backend cpu");
  try {
    return make_cuda_backend(device);
  } catch (const std::exception& e) {
    // The backend's message says what is missing (no CUDA in this build, or no usable GPU and the CUDA error).
    throw std::invalid_argument("--backend cuda: " + std::string(e.what()));
  }
}

int run(int argc, char** argv) {
  const Args args = parse(argc, argv);
  if (args.has("help")) {
    std::cout << kHelp;
    return 0;
  }
  if (args.command != "validate" && args.command != "bench")
    throw std::invalid_argument(args.command.empty()
                                    ? "expected a command, validate or bench (see --help)"
                                    : "expected a command, validate or bench, got '" + args.command + "'");
  const std::string format = args.get("format").value_or("text");
  if (format != "text" && format != "json")
    throw std::invalid_argument("--format: expected text or json, got '" + format + "'");
  const auto seed = static_cast<std::uint64_t>(integer(args, "seed", 1, 0, std::numeric_limits<long long>::max()));
  const bool is_quick = args.has("quick");
  const std::optional<std::string> out = args.get("out");
  if (out && out->empty()) throw std::invalid_argument("--out: expected a file name");
  if (args.command == "validate" && args.has("ops")) throw std::invalid_argument("--ops: only with bench");
  if (args.command == "bench" && out) harness::csv_path_for(*out);  // reject FILE.csv before the run, not after
  std::vector<std::string> ops;
  if (const auto list = args.get("ops")) {
    ops = split(*list);
    const auto& names = harness::bench_op_names();
    for (const auto& op : ops)
      if (std::find(names.begin(), names.end(), op) == names.end()) {
        std::string message = "--ops: expected a comma-separated list of ";
        for (std::size_t i = 0; i < names.size(); ++i) {
          message += i == 0 ? "" : ", ";
          message += names[i];
        }
        message += "; got '";
        message += op;
        message += "'";
        throw std::invalid_argument(message);
      }
    if (ops.empty()) throw std::invalid_argument("--ops: expected at least one op");
  }

  const std::unique_ptr<Backend> backend = make_backend(args);
  if (args.command == "validate") {
    ProgressLine progress(false);
    const auto on_progress = [&](const std::string& line) { progress(line); };
    auto results = harness::validate(*backend, harness::select_shapes(is_quick), seed, on_progress);
    for (auto& r : harness::validate_collectives(*backend, seed, on_progress)) results.push_back(std::move(r));
    progress.finish();
    const std::string text = format == "json" ? harness::validation_json(*backend, results, seed)
                                              : harness::validation_text(*backend, results, seed);
    std::cout << text;
    if (out) write_text_file(*out, text);
    for (const auto& r : results)
      if (r.failed()) return 1;
    return 0;
  }

  harness::BenchOptions options;
  options.seed = seed;
  options.is_quick = is_quick;
  options.ops = ops;
  if (is_quick) {
    options.warmup = 1;
    options.min_iterations = 3;
    options.target_seconds = 0.05;
  }
  ProgressLine progress(true);
  options.progress = [&](const std::string& line) { progress(line); };
  const Measurements measurements =
      harness::run_bench(*backend, harness::bench_sweep(is_quick, backend->name() != "cpu"), options);
  progress.finish();
  std::cout << (format == "json" ? harness::measurements_json(measurements) : harness::bench_text(measurements));
  if (out) {
    harness::write_measurements(measurements, *out);
    if (format == "text")
      std::cout << "wrote " << *out << " and " << harness::csv_path_for(*out) << " ("
                << measurements.measurements_size() << " measurements)\n";
  }
  return 0;
}

}  // namespace
}  // namespace moesim::kernels

int main(int argc, char** argv) {
  try {
    return moesim::kernels::run(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "moesim-kernels: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moesim-kernels: error: %s\n", e.what());
    return 1;
  }
}
