// moesim: the command line. Parses arguments, runs the command, prints or writes its results. This is the only
// place where an error becomes an exit code: 2 for bad input (std::invalid_argument), 1 for anything else.
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include "common/config.hpp"
#include "reports/writers.hpp"
#include "sim/a2a.hpp"
#include "sim/calibrate/calibrate.hpp"
#include "sim/capacity.hpp"
#include "sim/cli/args.hpp"
#include "sim/cli/scenario_flags.hpp"
#include "sim/compute/cost_profile.hpp"
#include "sim/plan.hpp"
#include "sim/scenario.hpp"
#include "sim/step/builder.hpp"
#include "sim/step/report.hpp"
#include "topologies/cluster.hpp"
#include "workloads/layout.hpp"
#include "workloads/memory.hpp"
#include "workloads/model.hpp"
#include "workloads/routing_file.hpp"
#include "workloads/schedule.hpp"

namespace moesim::sim::cli {
namespace {

constexpr const char* kTopHelp = R"(moesim: a discrete-event simulator of Mixture-of-Experts GPU clusters

usage: moesim [COMMAND] [OPTIONS]

commands:
  (none)      run the embedded default scenario (one DeepSeek-V3 layer on 32 nodes of h800) and print its summary
  a2a         All-to-All (dispatch and combine) cost of one MoE layer, or a plain all-to-all
  capacity    expert capacity: dropped, rerouted and padded token copies and expert/rank load over
              capacity factors, per layer; optionally DeepSeek-V3's bias balancing over steps
  step        one training step of a model on a cluster under a parallel layout: step time, tokens/s, MFU,
              where the time goes per pipeline stage, memory per GPU, the critical path
  plan        rank the parallel layouts that train the model on the cluster (fits in memory, simulated)
  kernels     validate | bench: run the real MoE kernels (CPU reference, CUDA when built with it) and
              check them against the reference, or time them and write measurements
  calibrate   fit the cost profile's roofline to kernel measurements, write it, and report its error on
              measurements held out from the fit
  presets     list the shipped clusters and models

Run 'moesim COMMAND --help' for the options of a command.
)";

void declare_common(Args& args) {
  args.option("format", "text|json", "output format (default text)");
  args.option("out", "FILE", "also write the results to FILE (JSON with --format json), atomically");
  args.option("seed", "N", "random seed (default 1); the same inputs and seed give byte-identical results");
  args.flag("help", "show this help");
}

// A JSON string literal.
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string output_format(const Args& args) {
  std::string format = args.get("format").value_or("text");
  if (format != "text" && format != "json")
    throw std::invalid_argument("--format: expected text or json, got '" + format + "'");
  return format;
}

int run_a2a_command(int argc, char** argv, int first, bool is_default) {
  Args args(is_default ? "moesim [--format text|json] [--out FILE]" : "moesim a2a [OPTIONS]",
            "Simulates the All-to-All dispatch and combine of one MoE layer (or, with --bytes-per-rank, a plain\n"
            "all-to-all as nccl-tests runs it) on a cluster, with routing sampled token by token. Values come from\n"
            "--scenario FILE, then the flags below; with neither a scenario, a cluster, a model nor a size, the\n"
            "embedded default scenario runs (one DeepSeek-V3 layer on 32 nodes of h800).");
  declare_common(args);
  if (!is_default) {
    declare_scenario_flags(args);
    declare_network_flags(args);
    args.option("capacity-factor", "F",
                "capacity per rank and expert = ceil(tokens x top_k / experts x F) (default 1.0;\nused unless the "
                "policy is dropless)");
  }
  args.parse(argc, argv, first);
  if (args.flag_set("help")) {
    std::cout << args.help();
    return 0;
  }
  const std::string format = output_format(args);

  // The embedded default runs when nothing names a cluster or a workload; otherwise values come from the
  // scenario file, then the flags, over neutral defaults (so none of the default scenario's choices leak in).
  ScenarioSpec spec = scenario_from_flags(args, true);
  reject_step_keys(spec, "a2a", {});
  if (auto v = args.get_double("capacity-factor", 1e-6, 1e6)) spec.capacity_factor = *v;

  const auto started = std::chrono::steady_clock::now();
  const ResolvedScenario scenario = resolve(spec);
  const topologies::Cluster cluster(scenario.cluster);
  const reports::A2aResult result = run_a2a(cluster, scenario.a2a);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  const std::string text = format == "json" ? reports::to_json(result) : reports::a2a_text(result);
  if (auto out = args.get("out")) reports::write_file_atomically(*out, text);
  std::cout << text;
  if (format == "text") std::fprintf(stdout, "\nsimulated in %.2f s of wall time\n", wall);
  return 0;
}

// "1.25" or "1,1.25,1.5": each a finite number > 0.
std::vector<double> parse_factor_list(const std::string& text) {
  const std::string expected = "--capacity-factor: expected F or F,F,... with each F a finite number > 0, got '";
  std::vector<double> factors;
  std::size_t begin = 0;
  while (true) {
    const std::size_t comma = text.find(',', begin);
    const std::string item = text.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin);
    std::size_t used = 0;
    double value = 0.0;
    try {
      value = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || !std::isfinite(value) || value <= 0.0) {
      throw std::invalid_argument(expected + text + "'");
    }
    factors.push_back(value);
    if (comma == std::string::npos) return factors;
    begin = comma + 1;
  }
}

// The options moesim step and moesim plan share, declared once.
void declare_step_flags(Args& args) {
  declare_scenario_flags(args);
  args.option("seq-len", "S", "tokens per sequence (default 4096; prefill: the prompt length)");
  args.option("precision", "P", "GEMM precision: bf16 (default) | fp8");
  args.option("zero", "N", "ZeRO stage 0..3 (default 1: distributed optimizer)");
  args.option("profile", "FILE", "cost profile YAML (default: the built-in profile)");
  args.option("algorithm", "A", "All-to-All algorithm: direct (default) | pairwise | hierarchical | rail");
  args.option("epsilon", "E", "network completion window (default 0.01)");
  args.option("memoize", "on|off", "reuse clean measurements of repeated collectives (default on)");
  args.option("comm-sms", "N",
              "SMs each GPU gives its communication kernels for the whole step (DeepSeek-V3: 20);\n"
              "compute runs on the rest and each GPU's traffic is capped at N x comm_bandwidth_per_sm\n"
              "(default 0: none reserved, only the links limit communication)");
  args.option("routing-samples", "N",
              "routings sampled per MoE layer; micro-batch m routes with sample m mod N (default 1:\n"
              "every micro-batch routes as the first; more costs sampling and simulation time)");
}

struct StepSetup {
  ResolvedScenario scenario;
  compute::CostProfile profile;
  step::StepConfig config;  // everything but the layout
  StepKeys keys;            // the scenario's step and plan keys, with the flags applied over them
};

// "1,2,4": each an integer in [1, max].
std::vector<int> parse_int_list(const std::string& flag, const std::string& text, int max) {
  std::vector<int> values;
  std::size_t begin = 0;
  while (true) {
    const std::size_t comma = text.find(',', begin);
    const std::string item = text.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin);
    std::size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || value < 1 || value > max) {
      std::string message = "--" + flag;
      message += ": expected N or N,N,... with each N an integer in [1, " + std::to_string(max) + "], got '";
      message += text + "'";
      throw std::invalid_argument(message);
    }
    values.push_back(static_cast<int>(value));
    if (comma == std::string::npos) return values;
    begin = comma + 1;
  }
}

bool on_off(const std::string& flag, const std::string& value) {
  if (value != "on" && value != "off") {
    throw std::invalid_argument("--" + flag + ": expected on or off, got '" + value + "'");
  }
  return value == "on";
}

// Where a step or plan key's value came from, for messages: the scenario's "FILE:LINE: key", or the flag.
std::string origin_of(const StepKeys& keys, const std::string& key, const std::string& flag) {
  for (const auto& [name, where] : keys.set) {
    if (name == key) return where;
  }
  return flag;
}

// The flags of `command` (the step and plan flags declared by the caller) over the scenario's keys. A key a flag
// overrides leaves `set`, so that messages name the flag.
StepKeys step_keys_from_flags(const Args& args, StepKeys keys) {
  const std::vector<std::pair<std::string, std::string>> flag_of_key = {{"seq_len", "seq-len"},
                                                                        {"precision", "precision"},
                                                                        {"zero", "zero"},
                                                                        {"profile", "profile"},
                                                                        {"memoize", "memoize"},
                                                                        {"comm_sms", "comm-sms"},
                                                                        {"routing_samples", "routing-samples"},
                                                                        {"layout", "layout"},
                                                                        {"schedule", "schedule"},
                                                                        {"mode", "mode"},
                                                                        {"context", "context"},
                                                                        {"recompute", "recompute"},
                                                                        {"gbs", "gbs"},
                                                                        {"mbs", "mbs"},
                                                                        {"vpp", "vpp"},
                                                                        {"max_tp", "max-tp"},
                                                                        {"etp", "etp"},
                                                                        {"top", "top"}};
  std::erase_if(keys.set, [&](const auto& entry) {
    for (const auto& [key, flag] : flag_of_key) {
      if (key == entry.first) return args.has(flag);
    }
    return false;
  });
  if (auto v = args.get_int("seq-len", 1, 1 << 24)) keys.seq_len = *v;
  if (auto v = args.get("precision")) {
    if (*v != "bf16" && *v != "fp8") throw std::invalid_argument("--precision: expected bf16 or fp8, got '" + *v + "'");
    keys.precision = *v;
  }
  if (auto v = args.get_int("zero", 0, 3)) keys.zero = static_cast<int>(*v);
  if (auto v = args.get("profile")) keys.profile = *v;
  if (auto v = args.get("memoize")) keys.memoize = on_off("memoize", *v);
  if (auto v = args.get_int("comm-sms", 0, 1'000'000)) keys.comm_sms = static_cast<int>(*v);
  if (auto v = args.get_int("routing-samples", 1, 1'000'000)) keys.routing_samples = static_cast<int>(*v);
  if (args.declares("layout")) {
    if (auto v = args.get("layout")) keys.layout = *v;
    if (auto v = args.get("schedule")) keys.schedule = *v;
    if (auto v = args.get("mode")) keys.mode = *v;
    if (auto v = args.get_int("context", 1, 1LL << 30)) keys.context = *v;
  }
  if (auto v = args.get("recompute")) keys.recompute = *v;
  if (args.declares("gbs")) {
    if (auto v = args.get_int("gbs", 1, 1LL << 40)) keys.gbs = *v;
    if (auto v = args.get("mbs")) keys.mbs = parse_int_list("mbs", *v, 1 << 20);
    if (auto v = args.get("vpp")) keys.vpp = parse_int_list("vpp", *v, 1 << 10);
    if (auto v = args.get_int("max-tp", 1, 1'000'000)) keys.max_tp = static_cast<int>(*v);
    if (args.flag_set("etp")) keys.etp = true;
    if (auto v = args.get_int("top", 1, 1'000'000)) keys.top = static_cast<int>(*v);
  }
  return keys;
}

// The scenario, the cost profile and the step configuration the shared flags and keys describe.
StepSetup step_setup_from_flags(const Args& args, const char* command, const std::vector<std::string>& allowed_keys) {
  ScenarioSpec spec = scenario_from_flags(args, false);
  reject_step_keys(spec, command, allowed_keys);
  StepSetup setup{resolve(spec), {}, {}, step_keys_from_flags(args, spec.step_keys)};
  if (!setup.scenario.a2a.model) {
    throw std::invalid_argument(std::string("model: moesim ") + command + " needs a model, not bytes_per_rank");
  }
  const StepKeys& keys = setup.keys;
  setup.profile = keys.profile ? compute::load_cost_profile(*keys.profile) : compute::default_cost_profile();
  step::StepConfig& config = setup.config;
  config.model = *setup.scenario.a2a.model;
  if (keys.seq_len) config.seq_len = *keys.seq_len;
  config.routing = setup.scenario.a2a.routing;
  config.seed = setup.scenario.a2a.seed;
  config.placement = setup.scenario.a2a.placement;
  config.a2a_algorithm = setup.scenario.a2a.algorithm;
  config.executor.epsilon = setup.scenario.a2a.epsilon;
  if (keys.memoize) config.executor.memoize = *keys.memoize;
  if (keys.precision)
    config.gemm_precision = *keys.precision == "fp8" ? compute::Precision::kFp8 : compute::Precision::kBf16;
  if (keys.zero) config.zero_stage = *keys.zero;
  if (keys.comm_sms) {
    const compute::DeviceProfile& device = setup.profile.device(setup.scenario.cluster.gpu.name, "cluster gpu.name");
    if (*keys.comm_sms >= device.sm_count) {
      throw std::invalid_argument(origin_of(keys, "comm_sms", "--comm-sms") + ": must leave compute some of the " +
                                  std::to_string(device.sm_count) + " SMs of " + device.name + ", got " +
                                  std::to_string(*keys.comm_sms));
    }
    config.comm_sms = *keys.comm_sms;
  }
  if (keys.routing_samples) config.routing_samples = *keys.routing_samples;
  if (keys.recompute) config.recompute = workloads::parse_recompute(*keys.recompute);
  return setup;
}

int run_step_command(int argc, char** argv, int first) {
  Args args("moesim step --cluster C --model M --layout L [OPTIONS]",
            "Simulates one training step: every pipeline stage's forward and backward of every micro-batch, layer by\n"
            "layer, with compute timed by the roofline of the cost profile and every collective (TP all-reduce, EP\n"
            "dispatch and combine with routing sampled token by token, pipeline sends, DP gradient reduction) played\n"
            "on the flow-level network, on per-stage compute and communication streams.");
  declare_common(args);
  declare_step_flags(args);
  args.option("layout", "L", "dp=..,tp=..,pp=..,ep=..,etp=..,vpp=..,mbs=..,gbs=.. (omitted keys: see README)");
  args.option("schedule", "S", "pipeline schedule: 1f1b (default) | interleaved (with vpp > 1) | gpipe");
  args.option("mode", "M",
              "train (default) | prefill (forwards of gbs prompts) | decode (one new token for each of gbs\n"
              "sequences, --context tokens already cached)");
  args.option("context", "N", "decode: tokens already in each sequence's KV cache (default: --seq-len)");
  args.option("recompute", "R",
              "activation recomputation: none (default) | selective (attention core) | full (each layer's\n"
              "forward again before its backward); changes both the time and the memory");
  args.option("trace", "FILE",
              "also write a Chrome/Perfetto trace (open in ui.perfetto.dev): a process per stage, a\n"
              "thread per stream, a slice per task, and link-utilisation counters");
  args.parse(argc, argv, first);
  if (args.flag_set("help")) {
    std::cout << args.help();
    return 0;
  }
  const std::string format = output_format(args);
  StepSetup setup = step_setup_from_flags(args, "step",
                                          {"seq_len", "precision", "zero", "profile", "memoize", "comm_sms",
                                           "routing_samples", "layout", "schedule", "mode", "context", "recompute"});
  const StepKeys& keys = setup.keys;
  if (!keys.layout) throw std::invalid_argument("--layout: required (e.g. dp=8,tp=1,pp=2,ep=8,mbs=1,gbs=64)");
  const ResolvedScenario& scenario = setup.scenario;
  const compute::CostProfile& profile = setup.profile;
  const topologies::Cluster cluster(scenario.cluster);
  step::StepConfig& config = setup.config;
  try {
    config.layout = workloads::parse_layout(*keys.layout, cluster.num_gpus());
    workloads::validate_layout(config.layout, config.model, cluster.num_gpus());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(origin_of(keys, "layout", "--layout") + ": " + e.what());
  }
  if (keys.schedule) config.schedule = workloads::parse_pipeline_schedule(*keys.schedule);
  step::StepReportInputs inputs;
  inputs.cluster_name = scenario.cluster.name;
  inputs.gpu_profile = profile.device(scenario.cluster.gpu.name, "cluster gpu.name").name;
  inputs.profile_source = profile.source;
  inputs.memory.seq_length = config.seq_len;
  inputs.memory.zero_stage = config.zero_stage;
  inputs.memory.recompute = config.recompute;
  if (keys.mode) config.mode = workloads::parse_step_mode(*keys.mode);
  config.context_len = keys.context.value_or(config.seq_len);
  inputs.memory.mode = config.mode;
  inputs.memory.context_length = config.context_len;
  inputs.memory.inference_batch = config.layout.gbs / config.layout.dp;

  const auto trace = args.get("trace");
  config.executor.record_link_bytes = trace.has_value();  // the trace's link-utilisation counters
  const auto started = std::chrono::steady_clock::now();
  const step::StepResult result = step::run_training_step(cluster, profile, config);
  const reports::StepReport report = step::make_step_report(cluster, config, result, inputs);
  if (trace) step::write_step_trace(cluster, config, result, *trace);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const std::string text = format == "json" ? reports::to_json(report) : reports::step_text(report);
  if (auto out = args.get("out")) reports::write_file_atomically(*out, text);
  std::cout << text;
  if (format == "text") std::fprintf(stdout, "\nsimulated in %.2f s of wall time\n", wall);
  return 0;
}

int run_plan_command(int argc, char** argv, int first) {
  Args args(
      "moesim plan --cluster C --model M --gbs N [OPTIONS]",
      "Ranks the parallel layouts (DP x TP x PP x EP x expert-TP, micro-batch size, interleaving) that train the\n"
      "model on the cluster: every layout the divisibility rules allow, the lightest recomputation that fits\n"
      "in memory, a lower bound (compute and the EP All-to-Alls' unhidden time) to prune with, and a simulated\n"
      "step (as moesim step) for the rest; prints the top N and why the others lost. Progress goes to stderr.");
  declare_common(args);
  declare_step_flags(args);
  args.option("gbs", "N", "global batch in sequences (required)");
  args.option("mbs", "N[,N...]", "micro-batch sizes to try (default 1)");
  args.option("vpp", "N[,N...]", "model chunks per stage to try; > 1 uses the interleaved schedule (default 1)");
  args.option("max-tp", "N", "largest TP and expert-TP (default: the GPUs of one node)");
  args.flag("etp", "also try expert tensor parallelism");
  args.option("recompute", "R", "none | selective | full (default: the lightest that fits)");
  args.option("top", "N", "layouts to rank (default 10)");
  args.option("jobs", "N", "simulation threads (default: the hardware's); the result does not depend on it");
  args.parse(argc, argv, first);
  if (args.flag_set("help")) {
    std::cout << args.help();
    return 0;
  }
  const std::string format = output_format(args);
  const StepSetup setup =
      step_setup_from_flags(args, "plan",
                            {"seq_len", "precision", "zero", "profile", "memoize", "comm_sms", "routing_samples",
                             "recompute", "gbs", "mbs", "vpp", "max_tp", "etp", "top"});
  const StepKeys& keys = setup.keys;
  if (!keys.gbs) throw std::invalid_argument("--gbs: required (the global batch in sequences)");
  const ResolvedScenario& scenario = setup.scenario;
  const compute::CostProfile& profile = setup.profile;
  const step::StepConfig& base = setup.config;
  const topologies::Cluster cluster(scenario.cluster);
  PlanOptions options;
  options.enumerate.gbs = *keys.gbs;
  options.enumerate.max_tp = keys.max_tp.value_or(scenario.cluster.gpus_per_node);
  if (keys.mbs) options.enumerate.mbs_candidates = *keys.mbs;
  if (keys.vpp) options.enumerate.vpp_candidates = *keys.vpp;
  options.enumerate.allow_etp = keys.etp.value_or(false);
  if (keys.recompute) options.recompute = workloads::parse_recompute(*keys.recompute);
  if (keys.top) options.top = *keys.top;
  if (auto v = args.get_int("jobs", 1, 1024)) options.num_threads = static_cast<int>(*v);
  // Progress on stderr: rewritten in place on a terminal, else only the final line (logs stay clean).
  const bool is_terminal = isatty(fileno(stderr)) != 0;
  std::size_t shown = 0;  // the length of the line on the terminal, to blank what a shorter one leaves
  options.on_progress = [&](const PlanProgress& progress) {
    const std::string line = format_plan_progress(progress);
    if (is_terminal) {
      std::fprintf(stderr, "\r%s%s%s", line.c_str(),
                   std::string(shown > line.size() ? shown - line.size() : 0, ' ').c_str(),
                   progress.is_done ? "\n" : "");
      shown = line.size();
    } else if (progress.is_done) {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  };
  const auto started = std::chrono::steady_clock::now();
  const reports::PlanResult result = run_plan(cluster, profile, base, options);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const std::string text = format == "json" ? reports::to_json(result) : reports::plan_text(result);
  if (auto out = args.get("out")) reports::write_file_atomically(*out, text);
  std::cout << text;
  if (format == "text") std::fprintf(stdout, "\nplanned in %.2f s of wall time\n", wall);
  return 0;
}

int run_capacity_command(int argc, char** argv, int first) {
  Args args("moesim capacity --model M [OPTIONS]",
            "Expert capacity of MoE layers: routes every token (sampled, or replayed from a file) and applies the\n"
            "capacity policy at each capacity factor to the same routing; reports dropped, rerouted and padded\n"
            "copies per expert, per layer and overall, and the expert and rank load (max/mean, CV, Gini). With\n"
            "--cluster the whole cluster's GPUs are analysed; without one, a single EP group of --ep GPUs on nodes\n"
            "of 8 GPUs. The policy defaults to drop-position here.");
  declare_common(args);
  declare_scenario_flags(args);
  args.option("tokens", "T", "tokens per rank, the capacity group (alias of --tokens-per-rank; default 4096)");
  args.option("capacity-factor", "F[,F...]",
              "capacity factors, one table row each (default 1,1.25,1.5,2); per rank and expert,\n"
              "C = ceil(tokens x top_k / experts x F)");
  args.option("layers", "N",
              "analyse MoE layers 0..N-1 (default: all the model's MoE layers, or the routing\n"
              "file's); --layer L analyses MoE layer L alone");
  args.option("steps", "N",
              "also simulate DeepSeek-V3's auxiliary-loss-free bias balancing for N >= 1 steps\n"
              "on the first layer at the first factor (needs --bias-rate)");
  args.option("bias-rate", "G",
              "the balancing's bias update per step (gamma, in router-logit units, >= 0);\n"
              "compared with rate 0 over the same tokens");
  args.option("write-routing", "FILE",
              "write the analysed layers' routing (experts and scores) as a routing file,\n"
              "which --routing-file replays to the same counts");
  args.parse(argc, argv, first);
  if (args.flag_set("help")) {
    std::cout << args.help();
    return 0;
  }
  const std::string format = output_format(args);
  if (args.has("tokens") && args.has("tokens-per-rank")) {
    throw std::invalid_argument("--tokens: an alias of --tokens-per-rank; give one of them");
  }
  if (args.has("layers") && args.has("layer")) {
    throw std::invalid_argument("--layers: give --layers N (layers 0..N-1) or --layer L (layer L), not both");
  }
  if (args.has("steps") != args.has("bias-rate")) {
    throw std::invalid_argument(args.has("steps") ? "--steps: needs --bias-rate G" : "--bias-rate: needs --steps N");
  }
  ScenarioSpec spec = scenario_from_flags(args, false);
  reject_step_keys(spec, "capacity", {});
  if (auto v = args.get_int("tokens", 0, 1LL << 40)) spec.tokens_per_rank = *v;
  CapacityConfig config = resolve_capacity(spec);
  if (auto v = args.get("capacity-factor")) config.factors = parse_factor_list(*v);
  if (auto n = args.get_int("layers", 1, 1'000'000)) {
    config.layers.resize(static_cast<std::size_t>(*n));
    std::iota(config.layers.begin(), config.layers.end(), 0);
  }
  if (auto v = args.get_int("steps", 1, 1'000'000)) config.balancing_steps = static_cast<int>(*v);
  if (auto v = args.get_double("bias-rate", 0.0, 1e6)) config.bias_rate = *v;

  const auto started = std::chrono::steady_clock::now();
  const auto write_routing = args.get("write-routing");
  workloads::RecordedRouting routing;
  const reports::CapacityResult result = run_capacity(config, write_routing ? &routing : nullptr);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (write_routing) {
    std::ostringstream file;
    workloads::write_routing(file, routing);
    reports::write_file_atomically(*write_routing, file.str());
  }

  const std::string text = format == "json" ? reports::to_json(result) : reports::capacity_text(result);
  if (auto out = args.get("out")) reports::write_file_atomically(*out, text);
  std::cout << text;
  if (format == "text") std::fprintf(stdout, "\nanalysed in %.2f s of wall time\n", wall);
  return 0;
}

int run_presets_command(int argc, char** argv, int first) {
  Args args("moesim presets [--format text|json]", "Lists the shipped cluster and model presets.");
  args.option("format", "text|json", "output format (default text)");
  args.option("seed", "N", "accepted as by every command; listing presets draws nothing");
  args.flag("help", "show this help");
  args.parse(argc, argv, first);
  if (args.flag_set("help")) {
    std::cout << args.help();
    return 0;
  }
  const std::string format = output_format(args);
  if (format == "json") {
    std::string out = "{\n  \"clusters\": [\n";
    const auto clusters = topologies::cluster_presets();
    for (std::size_t i = 0; i < clusters.size(); ++i) {
      out += "    {\"name\": " + quoted(clusters[i].name) +
             ", \"default_nodes\": " + std::to_string(clusters[i].default_nodes) +
             ", \"summary\": " + quoted(clusters[i].summary) + "}" + (i + 1 < clusters.size() ? ",\n" : "\n");
    }
    out += "  ],\n  \"models\": [\n";
    const auto models = workloads::model_presets();
    for (std::size_t i = 0; i < models.size(); ++i) {
      out += "    {\"name\": " + quoted(models[i].name) + ", \"summary\": " + quoted(models[i].summary) + "}" +
             (i + 1 < models.size() ? ",\n" : "\n");
    }
    out += "  ]\n}\n";
    std::cout << out;
    return 0;
  }
  std::cout << "clusters (--cluster NAME, --nodes N):\n";
  for (const auto& p : topologies::cluster_presets()) {
    std::printf("  %-14s %s (default %d nodes)\n", p.name.c_str(), p.summary.c_str(), p.default_nodes);
  }
  std::cout << "\nmodels (--model NAME):\n";
  for (const auto& p : workloads::model_presets()) std::printf("  %-16s %s\n", p.name.c_str(), p.summary.c_str());
  return 0;
}

int run_calibrate_command(int argc, char** argv, int first) {
  Args args("moesim calibrate MEASUREMENTS... --out profile.yaml [OPTIONS]",
            "Fits, per device and op kind, the roofline of the cost profile (launch overhead, compute and memory\n"
            "efficiency) to kernel measurements (moesim kernels bench --out FILE) and writes the profile, which\n"
            "moesim step --profile FILE reads; validates by fitting again without the held-out measurements and\n"
            "predicting them (sim/calibrate/calibrate.hpp: the model and the fit).");
  args.positionals("MEASUREMENTS", "Measurements files: binary protobuf, or proto3 JSON");
  args.option("out", "FILE", "write the fitted cost profile YAML to FILE (required), atomically");
  args.option("holdout", "SPEC",
              "largest (default: the largest value of each size the sweep varies) | none |\n"
              "KEY=V[,V...][+KEY=V...] with KEY tokens, hidden, experts, topk, ffn or skew");
  args.option("format", "text|json", "output format of the report (default text)");
  args.flag("help", "show this help");
  args.parse(argc, argv, first);
  if (args.flag_set("help")) {
    std::cout << args.help();
    return 0;
  }
  const std::string format = output_format(args);
  if (args.positional().empty()) {
    throw std::invalid_argument("MEASUREMENTS: at least one file (moesim kernels bench --out FILE writes one)");
  }
  const auto out = args.get("out");
  if (!out) throw std::invalid_argument("--out: required (the cost profile YAML to write)");
  const calibrate::Samples samples = calibrate::read_samples(args.positional());
  calibrate::Calibration calibration = calibrate::calibrate(samples.samples, args.get("holdout").value_or("largest"));
  calibration.result.set_num_ignored(samples.num_ignored);
  calibration.result.set_tool_version(MOESIM_VERSION);
  calibration.result.set_profile_path(*out);
  reports::write_file_atomically(*out, compute::write_cost_profile(calibration.profile));
  std::cout << (format == "json" ? reports::to_json(calibration.result)
                                 : calibrate::calibration_text(calibration.result));
  return 0;
}

// `moesim kernels ...` runs the kernels' own program, moesim-kernels, built beside moesim from kernels/ (sim/
// never links the kernels: DESIGN.md). Returns only when it cannot be started.
int run_kernels_command(int argc, char** argv) {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  std::vector<std::filesystem::path> candidates;
  if (!error) {
    candidates.push_back(self.parent_path() / "moesim-kernels");
    candidates.push_back(self.parent_path() / "kernels" / "moesim-kernels");
  }
  for (const auto& path : candidates) {
    if (!std::filesystem::exists(path)) continue;
    std::vector<char*> args;
    std::string program = path.string();
    args.push_back(program.data());
    for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
    args.push_back(nullptr);
    std::fflush(stdout);
    execv(program.c_str(), args.data());
    throw std::runtime_error("kernels: cannot run " + program + ": " + std::strerror(errno));
  }
  throw std::invalid_argument("kernels: moesim-kernels is not beside moesim (build the moesim-kernels target)");
}

int run(int argc, char** argv) {
  if (argc >= 2) {
    const std::string command = argv[1];
    if (command == "kernels") return run_kernels_command(argc, argv);
    if (command == "a2a") return run_a2a_command(argc, argv, 2, false);
    if (command == "capacity") return run_capacity_command(argc, argv, 2);
    if (command == "step") return run_step_command(argc, argv, 2);
    if (command == "plan") return run_plan_command(argc, argv, 2);
    if (command == "presets") return run_presets_command(argc, argv, 2);
    if (command == "calibrate") return run_calibrate_command(argc, argv, 2);
    if (command == "--help" || command == "-h" || command == "help") {
      std::cout << kTopHelp;
      return 0;
    }
    if (command == "--version") {
      std::cout << "moesim " MOESIM_VERSION "\n";
      return 0;
    }
    if (command.rfind("--", 0) != 0)
      throw std::invalid_argument("unknown command '" + command + "' (see moesim --help)");
  }
  return run_a2a_command(argc, argv, 1, true);
}

}  // namespace
}  // namespace moesim::sim::cli

int main(int argc, char** argv) {
  try {
    return moesim::sim::cli::run(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "moesim: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moesim: internal error: %s\n", e.what());
    return 1;
  }
}
