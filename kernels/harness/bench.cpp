#include "kernels/harness/bench.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <sstream>
#include <stdexcept>

#include "kernels/config.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/harness/collectives.hpp"
#include "kernels/index_math.hpp"

namespace moesim::kernels::harness {
namespace {

constexpr std::size_t kAlignment = 256;
constexpr std::size_t kFallbackCacheBytes = 32ULL << 20;
constexpr std::size_t kMaxSets = 1 << 16;
// Bulk inputs (activations, weights) tile a pool of random BF16 values: timing needs realistic values, not
// independent ones, and drawing gigabytes of them would take longer than the benchmark. An odd length keeps
// rows from repeating in step with any power-of-two shape.
constexpr std::size_t kPoolValues = (1 << 20) - 3;

std::size_t align_up(std::size_t bytes) {
  return (bytes + kAlignment - 1) / kAlignment * kAlignment;
}

// One buffer of an op's input set. Inputs start from host bytes: all of them (index arrays), or a prefix that is
// repeated to fill the buffer (bulk values). Outputs (host == nullptr) start as whatever the memory holds.
struct Buffer {
  std::size_t bytes = 0;
  const void* host = nullptr;
  std::size_t host_bytes = 0;
};

struct OpCase {
  std::string op;
  std::vector<Buffer> buffers;
  std::function<void(Backend&, const std::vector<char*>&)> launch;  // pointers to this set's buffers
  double flops = 0;
  double bytes = 0;
  Shape shape;
};

// Backend memory that grows to the largest request and is reused (so the pages are touched once per run).
class Arena {
 public:
  explicit Arena(Backend& backend) : backend_(backend) {}
  ~Arena() { backend_.release(data_); }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  char* reserve(std::size_t bytes) {
    if (bytes > size_) {
      backend_.release(data_);
      data_ = nullptr;
      size_ = 0;
      data_ = static_cast<char*>(backend_.alloc(bytes));
      size_ = bytes;
    }
    return data_;
  }

 private:
  Backend& backend_;
  char* data_ = nullptr;
  std::size_t size_ = 0;
};

// The host-side inputs of one point, shared by its ops.
struct PointInputs {
  Routing routing;
  std::int64_t capacity = 0;
  std::vector<std::int32_t> routed;
  std::vector<std::int32_t> offsets;
  std::vector<std::int32_t> row_of_copy;
  std::int64_t rows = 0;
  std::int64_t busiest = 0;
  int active = 0;
};

PointInputs point_inputs(const BenchPoint& p, std::uint64_t seed) {
  Rng rng(seed, "bench/routing/" + p.skew.name() + "/" + std::to_string(p.tokens) + "/" + std::to_string(p.experts) +
                    "/" + std::to_string(p.topk));
  PointInputs in;
  in.routing = sample_routing(p.tokens, p.experts, p.topk, p.skew, false, rng);
  in.capacity = expert_capacity(p.tokens, p.topk, p.experts, p.capacity_factor);
  const auto copies = static_cast<std::size_t>(p.tokens * p.topk);
  in.routed.resize(static_cast<std::size_t>(p.experts));
  in.offsets.resize(static_cast<std::size_t>(p.experts) + 1);
  in.row_of_copy.resize(copies);
  std::vector<std::int32_t> token_of_row(copies);
  PermuteArgs maps;
  maps.tokens = p.tokens;
  maps.hidden = p.hidden;
  maps.experts = p.experts;
  maps.topk = p.topk;
  maps.capacity = in.capacity;
  maps.expert = in.routing.expert.data();
  maps.weight = in.routing.weight.data();
  maps.routed = in.routed.data();
  maps.offsets = in.offsets.data();
  maps.row_of_copy = in.row_of_copy.data();
  maps.token_of_row = token_of_row.data();
  // check_args wants every pointer whose array is not empty; permutation_maps reads neither x nor permuted.
  Bf16 unused{};
  maps.x = &unused;
  maps.permuted = &unused;
  permutation_maps(maps);
  in.rows = in.offsets.back();
  for (int e = 0; e < p.experts; ++e) {
    const std::int64_t n = in.offsets[static_cast<std::size_t>(e) + 1] - in.offsets[static_cast<std::size_t>(e)];
    in.busiest = std::max(in.busiest, n);
    in.active += n > 0 ? 1 : 0;
  }
  return in;
}

Shape point_shape(const BenchPoint& p, const PointInputs& in) {
  Shape s;
  s.set_tokens(p.tokens);
  s.set_hidden(p.hidden);
  s.set_experts(p.experts);
  s.set_topk(p.topk);
  s.set_ffn(p.ffn);
  s.set_skew(p.skew.name());
  s.set_capacity_factor(p.capacity_factor);
  s.set_rows(in.rows);
  s.set_max_rows_per_expert(in.busiest);
  s.set_active_experts(in.active);
  return s;
}

template <typename T>
Buffer index_input(const std::vector<T>& host) {
  return {host.size() * sizeof(T), host.data(), host.size() * sizeof(T)};
}

Buffer bulk_input(std::size_t count, const std::vector<Bf16>& pool) {
  return {count * sizeof(Bf16), pool.data(), std::min(count, pool.size()) * sizeof(Bf16)};
}

Buffer output(std::size_t bytes) {
  return {bytes, nullptr, 0};
}

std::vector<OpCase> op_cases(const BenchPoint& p, const PointInputs& in, const std::vector<Bf16>& pool,
                             const std::vector<float>& bias) {
  const double T = static_cast<double>(p.tokens);
  const double H = static_cast<double>(p.hidden);
  const double E = p.experts;
  const double k = p.topk;
  const double F = static_cast<double>(p.ffn);
  const double R = static_cast<double>(in.rows);
  const auto tokens = static_cast<std::size_t>(p.tokens);
  const auto hidden = static_cast<std::size_t>(p.hidden);
  const auto experts = static_cast<std::size_t>(p.experts);
  const auto copies = static_cast<std::size_t>(p.tokens * p.topk);
  const auto rows = static_cast<std::size_t>(in.rows);
  const auto ffn = static_cast<std::size_t>(p.ffn);
  const Shape shape = point_shape(p, in);
  std::vector<OpCase> cases;

  {
    OpCase c;
    c.op = "router";
    c.buffers = {bulk_input(tokens * hidden, pool),
                 bulk_input(hidden * experts, pool),
                 index_input(bias),
                 output(tokens * experts * 4),
                 output(copies * 4),
                 output(copies * 4)};
    c.launch = [p](Backend& b, const std::vector<char*>& ptr) {
      RouterArgs a;
      a.tokens = p.tokens;
      a.hidden = p.hidden;
      a.experts = p.experts;
      a.topk = p.topk;
      a.x = reinterpret_cast<const Bf16*>(ptr[0]);
      a.w = reinterpret_cast<const Bf16*>(ptr[1]);
      a.scores = reinterpret_cast<float*>(ptr[3]);
      a.expert = reinterpret_cast<std::int32_t*>(ptr[4]);
      a.weight = reinterpret_cast<float*>(ptr[5]);
      b.router(a);
    };
    c.flops = 2 * T * H * E;
    c.bytes = 2 * (T * H + H * E) + 4 * T * E + 8 * T * k;
    c.shape = shape;
    cases.push_back(std::move(c));
  }
  {
    OpCase c;
    c.op = "permute";
    c.buffers = {index_input(in.routing.expert),
                 index_input(in.routing.weight),
                 bulk_input(tokens * hidden, pool),
                 output(experts * 4),
                 output((experts + 1) * 4),
                 output(copies * 4),
                 output(copies * 4),
                 output(copies * hidden * 2)};
    const std::int64_t capacity = in.capacity;
    c.launch = [p, capacity](Backend& b, const std::vector<char*>& ptr) {
      PermuteArgs a;
      a.tokens = p.tokens;
      a.hidden = p.hidden;
      a.experts = p.experts;
      a.topk = p.topk;
      a.capacity = capacity;
      a.expert = reinterpret_cast<const std::int32_t*>(ptr[0]);
      a.weight = reinterpret_cast<const float*>(ptr[1]);
      a.x = reinterpret_cast<const Bf16*>(ptr[2]);
      a.routed = reinterpret_cast<std::int32_t*>(ptr[3]);
      a.offsets = reinterpret_cast<std::int32_t*>(ptr[4]);
      a.row_of_copy = reinterpret_cast<std::int32_t*>(ptr[5]);
      a.token_of_row = reinterpret_cast<std::int32_t*>(ptr[6]);
      a.permuted = reinterpret_cast<Bf16*>(ptr[7]);
      b.permute(a);
    };
    c.bytes = 4 * T * k + 2 * R * H + 2 * R * H + 8 * T * k + 4 * (2 * E + 1);
    c.shape = shape;
    cases.push_back(std::move(c));
  }
  {
    OpCase c;
    c.op = "grouped_ffn";
    const std::size_t weights = experts * hidden * ffn;
    c.buffers = {index_input(in.offsets),   bulk_input(rows * hidden, pool), bulk_input(weights, pool),
                 bulk_input(weights, pool), bulk_input(weights, pool),       output(rows * ffn * 2),
                 output(rows * hidden * 2)};
    const std::int32_t* host_offsets = in.offsets.data();
    c.launch = [p, host_offsets](Backend& b, const std::vector<char*>& ptr) {
      GroupedFfnArgs a;
      a.experts = p.experts;
      a.hidden = p.hidden;
      a.ffn = p.ffn;
      a.offsets = reinterpret_cast<const std::int32_t*>(ptr[0]);
      a.host_offsets = host_offsets;
      a.x = reinterpret_cast<const Bf16*>(ptr[1]);
      a.w_gate = reinterpret_cast<const Bf16*>(ptr[2]);
      a.w_up = reinterpret_cast<const Bf16*>(ptr[3]);
      a.w_down = reinterpret_cast<const Bf16*>(ptr[4]);
      a.h = reinterpret_cast<Bf16*>(ptr[5]);
      a.y = reinterpret_cast<Bf16*>(ptr[6]);
      b.grouped_ffn(a);
    };
    c.flops = 6 * R * H * F;
    c.bytes = 2 * R * H + 6 * in.active * H * F + 2 * R * F + 2 * R * H;
    c.shape = shape;
    cases.push_back(std::move(c));
  }
  {
    OpCase c;
    c.op = "dense_gemm";
    const std::int64_t m = in.rows;
    const std::int64_t n = 3 * p.ffn;
    const std::int64_t kk = p.hidden;
    const auto um = static_cast<std::size_t>(m);
    const auto un = static_cast<std::size_t>(n);
    c.buffers = {bulk_input(um * hidden, pool), bulk_input(hidden * un, pool), output(um * un * 2)};
    c.launch = [m, n, kk](Backend& b, const std::vector<char*>& ptr) {
      GemmArgs a;
      a.m = m;
      a.n = n;
      a.k = kk;
      a.a = reinterpret_cast<const Bf16*>(ptr[0]);
      a.b = reinterpret_cast<const Bf16*>(ptr[1]);
      a.c = reinterpret_cast<Bf16*>(ptr[2]);
      b.dense_gemm(a);
    };
    const double dm = static_cast<double>(m);
    const double dn = static_cast<double>(n);
    c.flops = 2 * dm * dn * H;
    c.bytes = 2 * (dm * H + H * dn + dm * dn);
    c.shape = shape;
    c.shape.set_m(m);
    c.shape.set_n(n);
    c.shape.set_k(kk);
    cases.push_back(std::move(c));
  }
  {
    OpCase c;
    c.op = "unpermute";
    c.buffers = {bulk_input(std::max<std::size_t>(rows, 1) * hidden, pool), index_input(in.row_of_copy),
                 index_input(in.routing.weight), output(tokens * hidden * 2)};
    c.launch = [p](Backend& b, const std::vector<char*>& ptr) {
      UnpermuteArgs a;
      a.tokens = p.tokens;
      a.hidden = p.hidden;
      a.topk = p.topk;
      a.y = reinterpret_cast<const Bf16*>(ptr[0]);
      a.row_of_copy = reinterpret_cast<const std::int32_t*>(ptr[1]);
      a.weight = reinterpret_cast<const float*>(ptr[2]);
      a.out = reinterpret_cast<Bf16*>(ptr[3]);
      b.unpermute(a);
    };
    c.flops = 2 * R * H;
    c.bytes = 2 * R * H + 8 * T * k + 2 * T * H;
    c.shape = shape;
    cases.push_back(std::move(c));
  }
  return cases;
}

// Fills set 0 from the host (repeating bulk prefixes by doubling copies), then the other sets from set 0, again
// doubling: O(log) backend calls whatever the number of sets.
void fill_sets(Backend& b, char* base, const std::vector<Buffer>& buffers, const std::vector<std::size_t>& offset,
               std::size_t stride, std::size_t sets) {
  for (std::size_t i = 0; i < buffers.size(); ++i) {
    const Buffer& buf = buffers[i];
    if (buf.host == nullptr || buf.bytes == 0) continue;
    char* dst = base + offset[i];
    b.upload(dst, buf.host, buf.host_bytes);
    for (std::size_t done = buf.host_bytes; done < buf.bytes;) {
      const std::size_t n = std::min(done, buf.bytes - done);
      b.copy(dst + done, dst, n);
      done += n;
    }
  }
  for (std::size_t done = 1; done < sets;) {
    const std::size_t n = std::min(done, sets - done);
    b.copy(base + done * stride, base, n * stride);
    done += n;
  }
  b.synchronize();
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

std::string describe(const BenchPoint& p) {
  std::ostringstream out;
  out << "tokens=" << p.tokens << " hidden=" << p.hidden << " experts=" << p.experts << " topk=" << p.topk
      << " ffn=" << p.ffn << " skew=" << p.skew.name();
  if (p.capacity_factor > 0) out << " capacity=" << p.capacity_factor;
  return out.str();
}

BenchPoint point(std::string axis, std::int64_t tokens, std::int64_t hidden, int experts, int topk, std::int64_t ffn,
                 Skew skew = {}, double capacity_factor = 0) {
  return {std::move(axis), tokens, hidden, experts, topk, ffn, skew, capacity_factor};
}

}  // namespace

std::vector<BenchPoint> bench_sweep(bool is_quick, bool is_gpu) {
  using Kind = Skew::Kind;
  std::vector<BenchPoint> points;
  if (is_quick) {
    const BenchPoint base = point("base", 128, 256, 8, 2, 256);
    points.push_back(base);
    auto more = base;
    more.axis = "tokens";
    more.tokens = 512;
    points.push_back(more);
    auto skewed = base;
    skewed.axis = "skew";
    skewed.skew = {Kind::kZipf, 1.5};
    points.push_back(skewed);
    auto capped = base;
    capped.axis = "capacity";
    capped.capacity_factor = 1.0;
    capped.skew = {Kind::kZipf, 1.5};
    points.push_back(capped);
    return points;
  }
  // One axis at a time around the base point.
  const BenchPoint base = is_gpu ? point("base", 4096, 4096, 64, 8, 1024) : point("base", 512, 1024, 16, 2, 512);
  points.push_back(base);
  const auto vary = [&](const std::string& axis, auto set, const auto& values) {
    for (const auto& v : values) {
      BenchPoint p = base;
      p.axis = axis;
      set(p, v);
      points.push_back(p);
    }
  };
  using I64s = std::vector<std::int64_t>;
  using Ints = std::vector<int>;
  vary(
      "tokens", [](BenchPoint& p, std::int64_t v) { p.tokens = v; }, is_gpu ? I64s{256, 1024, 16384} : I64s{128, 2048});
  vary(
      "hidden", [](BenchPoint& p, std::int64_t v) { p.hidden = v; }, is_gpu ? I64s{1024, 2048, 7168} : I64s{256, 2048});
  vary(
      "experts", [](BenchPoint& p, int v) { p.experts = v; }, is_gpu ? Ints{8, 32, 128} : Ints{4, 64});
  vary(
      "topk", [](BenchPoint& p, int v) { p.topk = v; }, is_gpu ? Ints{1, 2, 4} : Ints{1, 4, 8});
  vary(
      "ffn", [](BenchPoint& p, std::int64_t v) { p.ffn = v; }, is_gpu ? I64s{512, 2048} : I64s{256, 1024});
  vary(
      "skew", [](BenchPoint& p, Skew v) { p.skew = v; }, std::vector<Skew>{{Kind::kZipf, 1.0}, {Kind::kZipf, 2.0}});
  vary(
      "capacity", [](BenchPoint& p, double v) { p.capacity_factor = v; }, std::vector<double>{1.0, 1.25});
  return points;
}

const std::vector<std::string>& bench_op_names() {
  static const std::vector<std::string> names = {"router",    "permute",       "grouped_ffn",   "dense_gemm",
                                                 "unpermute", "nccl_alltoall", "nccl_alltoallv"};
  return names;
}

Timing time_iterations(const std::function<double()>& run_once, const BenchOptions& options) {
  double estimate_ms = INFINITY;
  for (int i = 0; i < std::max(options.warmup, 1); ++i) estimate_ms = std::min(estimate_ms, run_once());
  const double wanted = options.target_seconds * 1e3 / std::max(estimate_ms, 1e-6);
  const int iterations =
      static_cast<int>(std::clamp(std::ceil(wanted), static_cast<double>(options.min_iterations),
                                  static_cast<double>(std::max(options.min_iterations, options.max_iterations))));
  Timing timing;
  timing.set_warmup(std::max(options.warmup, 1));
  timing.set_iterations(iterations);
  std::vector<double> samples(static_cast<std::size_t>(iterations));
  for (double& sample : samples) sample = run_once();
  for (double s : samples) timing.add_samples_ms(s);
  double sum = 0;
  for (double s : samples) sum += s;
  timing.set_min_ms(*std::min_element(samples.begin(), samples.end()));
  timing.set_max_ms(*std::max_element(samples.begin(), samples.end()));
  timing.set_median_ms(median_of(samples));
  timing.set_mean_ms(sum / static_cast<double>(samples.size()));
  return timing;
}

Measurements run_bench(Backend& backend, const std::vector<BenchPoint>& points, const BenchOptions& options) {
  const std::vector<std::string>& names = bench_op_names();
  for (const auto& op : options.ops)
    if (std::find(names.begin(), names.end(), op) == names.end()) {
      std::string message = "bench: op: expected ";
      for (std::size_t i = 0; i < names.size(); ++i) {
        message += i == 0 ? "" : i + 1 == names.size() ? " or " : ", ";
        message += names[i];
      }
      message += ", got '";
      message += op;
      message += "'";
      throw std::invalid_argument(message);
    }
  const auto is_selected = [&](const std::string& op) {
    return options.ops.empty() || std::find(options.ops.begin(), options.ops.end(), op) != options.ops.end();
  };
  std::size_t cache = options.cache_bytes != 0 ? options.cache_bytes : backend.cache_bytes();
  if (cache == 0) cache = kFallbackCacheBytes;

  Measurements out;
  out.set_tool_version(MOESIM_KERNELS_VERSION);
  out.set_backend(backend.name());
  out.set_device_name(backend.device_name());
  const bool is_cpu = backend.name() == "cpu";
  out.set_sm_count(is_cpu ? 0 : backend.compute_units());
  out.set_cpu_model(cpu::cpu_model());
  out.set_threads(is_cpu ? backend.compute_units() : 0);
  out.set_cache_bytes(static_cast<std::int64_t>(cache));
  out.set_seed(options.seed);
  out.set_quick(options.is_quick);
  out.set_started_at(utc_now());

  // The all-to-all ops that will run, and a SkippedOp for each that cannot.
  std::vector<std::string> collective_ops;
  for (const std::string& op : collective_op_names()) {
    if (!is_selected(op)) continue;
    const std::string reason = options.make_alltoall ? "" : collectives_unavailable_reason(backend);
    if (reason.empty()) {
      collective_ops.push_back(op);
    } else {
      SkippedOp* skipped = out.add_skipped();
      skipped->set_op(op);
      skipped->set_reason(reason);
    }
  }
  const std::vector<std::int64_t> sizes =
      options.alltoall_bytes_per_rank.empty() ? alltoall_sizes(options.is_quick) : options.alltoall_bytes_per_rank;

  const auto selected = static_cast<std::size_t>(std::count_if(
      names.begin(), names.end(), [&](const auto& op) { return is_selected(op) && !is_collective_op(op); }));
  const std::size_t total = points.size() * selected + collective_ops.size() * sizes.size();
  std::size_t done = 0;
  const auto report = [&](const std::string& what, const Timing& timing) {
    ++done;
    if (!options.progress) return;
    char median[32];
    std::snprintf(median, sizeof median, "%.3f", timing.median_ms());
    options.progress("[" + std::to_string(done) + "/" + std::to_string(total) + "] " + what + ": median " + median +
                     " ms over " + std::to_string(timing.iterations()));
  };

  // The backend's ops; the arena is released before the all-to-all buffers are allocated.
  if (selected > 0) {
    Rng pool_rng(options.seed, "bench/pool");
    const std::vector<Bf16> pool = random_bf16(kPoolValues, 1.0, pool_rng);
    Arena arena(backend);
    for (const BenchPoint& p : points) {
      const PointInputs in = point_inputs(p, options.seed);
      const std::vector<float> bias;  // the router runs unbiased here: the bias changes no cost
      for (OpCase& c : op_cases(p, in, pool, bias)) {
        if (!is_selected(c.op)) continue;
        std::vector<std::size_t> offset;
        std::size_t stride = 0;
        for (const Buffer& buf : c.buffers) {
          offset.push_back(stride);
          stride += align_up(buf.bytes);
        }
        stride = std::max<std::size_t>(stride, kAlignment);
        // Enough sets to cover 3x the cache, unless that passes the memory cap (one set always runs).
        std::size_t sets = std::max<std::size_t>((3 * cache + stride - 1) / stride, 1);
        if (sets * stride > options.max_rotation_bytes)
          sets = std::max<std::size_t>(options.max_rotation_bytes / stride, 1);
        sets = std::min(sets, kMaxSets);
        char* base = arena.reserve(sets * stride);
        fill_sets(backend, base, c.buffers, offset, stride, sets);
        std::vector<char*> ptr(c.buffers.size());
        std::size_t next_set = 0;
        const auto run_once = [&] {
          char* set = base + (next_set++ % sets) * stride;
          for (std::size_t i = 0; i < ptr.size(); ++i) ptr[i] = c.buffers[i].bytes == 0 ? nullptr : set + offset[i];
          backend.start_timer();
          c.launch(backend, ptr);
          return backend.stop_timer();
        };
        const Timing timing = time_iterations(run_once, options);

        Measurement* m = out.add_measurements();
        m->set_op(c.op);
        *m->mutable_shape() = c.shape;
        m->set_dtype("bf16");
        m->set_accumulate_dtype("fp32");
        m->set_flops(c.flops);
        m->set_bytes(c.bytes);
        const double seconds = timing.median_ms() * 1e-3;
        m->set_tflops(seconds > 0 ? c.flops / seconds / 1e12 : 0);
        m->set_gbps(seconds > 0 ? c.bytes / seconds / 1e9 : 0);
        *m->mutable_timing() = timing;
        m->set_input_sets(static_cast<std::int32_t>(sets));
        m->set_rotation_bytes(static_cast<std::int64_t>(sets * stride));
        report(c.op + " " + describe(p), timing);
      }
    }
  }

  if (!collective_ops.empty()) {
    const std::unique_ptr<AllToAll> exchange = options.make_alltoall ? options.make_alltoall() : make_nccl_alltoall();
    for (const std::string& op : collective_ops)
      for (const std::int64_t bytes : sizes) {
        const bool is_even = op == "nccl_alltoall";
        const AllToAllPlan plan = is_even ? alltoall_plan(exchange->num_ranks(), bytes)
                                          : alltoallv_plan(exchange->num_ranks(), bytes, kAllToAllvSkew, options.seed);
        Measurement* m = out.add_measurements();
        *m = bench_alltoall(*exchange, op, plan, is_even ? "uniform" : kAllToAllvSkew.name(), options);
        report(op + " gpus=" + std::to_string(exchange->num_ranks()) +
                   " bytes_per_rank=" + std::to_string(m->shape().bytes_per_rank()),
               m->timing());
      }
  }
  return out;
}

std::string bench_text(const Measurements& ms) {
  std::ostringstream out;
  out << "bench: backend " << ms.backend() << " (" << ms.device_name() << ", "
      << (ms.backend() == "cpu" ? std::to_string(ms.threads()) + " threads" : std::to_string(ms.sm_count()) + " SMs")
      << "), inputs rotated over " << (3 * ms.cache_bytes() >> 20) << " MiB (3x the last-level cache), seed "
      << ms.seed() << "\n";
  const auto& all = ms.measurements();
  const bool has_collectives =
      std::any_of(all.begin(), all.end(), [](const Measurement& m) { return is_collective_op(m.op()); });
  const bool has_kernels =
      std::any_of(all.begin(), all.end(), [](const Measurement& m) { return !is_collective_op(m.op()); });
  char line[512];
  if (has_kernels || !has_collectives) {
    std::snprintf(line, sizeof line, "%-12s %6s %6s %7s %4s %5s %-10s %4s %6s %10s %10s %10s %9s %9s\n", "op", "tokens",
                  "hidden", "experts", "topk", "ffn", "skew", "cap", "rows", "min ms", "median ms", "max ms", "TFLOP/s",
                  "GB/s");
    out << line;
  }
  for (const Measurement& m : all) {
    if (is_collective_op(m.op())) continue;
    const Shape& s = m.shape();
    char cap[16];
    std::snprintf(cap, sizeof cap, "%g", s.capacity_factor());
    std::snprintf(line, sizeof line,
                  "%-12s %6lld %6lld %7d %4d %5lld %-10s %4s %6lld %10.4f %10.4f %10.4f %9.4f %9.2f\n", m.op().c_str(),
                  static_cast<long long>(s.tokens()), static_cast<long long>(s.hidden()), s.experts(), s.topk(),
                  static_cast<long long>(s.ffn()), s.skew().c_str(), s.capacity_factor() > 0 ? cap : "-",
                  static_cast<long long>(s.rows()), m.timing().min_ms(), m.timing().median_ms(), m.timing().max_ms(),
                  m.tflops(), m.gbps());
    out << line;
  }
  if (has_collectives) {
    out << "all-to-all over every GPU (algbw = bytes per rank / median time, busbw = algbw x (n - 1) / n):\n";
    std::snprintf(line, sizeof line, "%-14s %4s %12s %-10s %12s %10s %10s %10s %10s %10s\n", "op", "gpus", "bytes/rank",
                  "skew", "max recv", "min ms", "median ms", "max ms", "algbw GB/s", "busbw GB/s");
    out << line;
  }
  for (const Measurement& m : all) {
    if (!is_collective_op(m.op())) continue;
    const Shape& s = m.shape();
    std::snprintf(line, sizeof line, "%-14s %4d %12lld %-10s %12lld %10.4f %10.4f %10.4f %10.2f %10.2f\n",
                  m.op().c_str(), s.num_gpus(), static_cast<long long>(s.bytes_per_rank()), s.skew().c_str(),
                  static_cast<long long>(s.max_recv_bytes_per_rank()), m.timing().min_ms(), m.timing().median_ms(),
                  m.timing().max_ms(), m.algbw_gbps(), m.busbw_gbps());
    out << line;
  }
  for (const SkippedOp& skipped : ms.skipped()) out << "skipped " << skipped.op() << ": " << skipped.reason() << "\n";
  return out.str();
}

}  // namespace moesim::kernels::harness
