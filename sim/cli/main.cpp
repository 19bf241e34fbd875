// moesim: the command line. Parses arguments, runs the command, prints or writes its results. This is the only
// place where an error becomes an exit code: 2 for bad input (std::invalid_argument), 1 for anything else.
#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <string>

#include "reports/writers.hpp"
#include "sim/a2a.hpp"
#include "sim/cli/args.hpp"
#include "sim/scenario.hpp"
#include "topologies/cluster.hpp"
#include "workloads/model.hpp"

namespace moesim::sim::cli {
namespace {

constexpr const char* kTopHelp = R"(moesim: a discrete-event simulator of Mixture-of-Experts GPU clusters

usage: moesim [COMMAND] [OPTIONS]

commands:
  (none)      run the embedded default scenario (one DeepSeek-V3 layer on 32 nodes of h800) and print its summary
  a2a         All-to-All (dispatch and combine) cost of one MoE layer, or a plain all-to-all
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
    args.option("scenario", "FILE", "scenario YAML bundling cluster, model, routing and options");
    args.option("cluster", "C", "cluster preset (dgx-h100, dgx-a100, h800, gb200-nvl72) or cluster YAML");
    args.option("nodes", "N", "node count (overrides the preset's default)");
    args.option("model", "M",
                "model preset (mixtral-8x7b, deepseek-v3, qwen3-30b-a3b, switch-base-128),\nmodel YAML or Hugging Face "
                "config.json");
    args.option("tokens-per-rank", "T", "tokens routed by each rank (default 4096)");
    args.option("ep", "N", "expert-parallel group size (default gcd(GPUs, experts)); groups run at once");
    args.option("placement", "P", "contiguous (rank r holds experts [rE/ep, (r+1)E/ep)) | round-robin (e on e % ep)");
    args.option("routing", "R",
                "expert popularity (default uniform):\n"
                "  uniform       every expert equally likely\n"
                "  zipf:S        Zipf with exponent S > 0 over a seeded ranking of the experts\n"
                "  dirichlet:A   popularity drawn from Dirichlet(A, ..., A), A > 0 (small A: few hot experts)\n"
                "  lognormal:CV  log-normal per-expert load with coefficient of variation CV > 0\n"
                "  hot:H:P       H hot experts receive a fraction P of all expert choices");
    args.option("node-limit", "M", "at most M nodes per token, DeepSeek-V3 style (0: no limit)");
    args.option("device-limit", "M", "at most M EP ranks per token, DeepSeek-V2 style (0: no limit)");
    args.option("algorithm", "A", "direct | pairwise | hierarchical | rail");
    args.option("token-dedup", "on|off",
                "a token bound for several experts on one rank (node) travels once (on)\nor once per expert (off)");
    args.option("bytes-per-rank", "B",
                "plain all-to-all instead of a layer: each rank's send buffer (e.g. 64MiB),\nsplit evenly over the "
                "group, as nccl-tests' alltoall");
    args.option("epsilon", "E",
                "network completion window, relative (default " +
                    std::to_string(network::kDefaultEpsilon).substr(0, 4) + "; 0 = exact, slower)");
  }
  args.parse(argc, argv, first);
  if (args.flag_set("help")) {
    std::cout << args.help();
    return 0;
  }
  const std::string format = output_format(args);

  // The embedded default runs when nothing names a cluster or a workload; otherwise values come from the
  // scenario file, then the flags, over neutral defaults (so none of the default scenario's choices leak in).
  const bool names_something =
      args.has("scenario") || args.has("cluster") || args.has("model") || args.has("bytes-per-rank");
  ScenarioSpec spec = names_something ? ScenarioSpec{} : default_scenario();
  if (auto path = args.get("scenario")) spec = load_scenario_file(std::move(spec), *path);
  if (auto v = args.get("cluster")) {
    spec.cluster = *v;
    spec.cluster_inline = YAML::Node();
    if (!args.has("nodes")) spec.nodes.reset();  // a new cluster brings its own default node count
  }
  if (auto v = args.get_int("nodes", 1, 1'000'000)) spec.nodes = static_cast<int>(*v);
  if (auto v = args.get("model")) {
    spec.model = *v;
    spec.model_inline = YAML::Node();
    spec.bytes_per_rank.reset();
  }
  if (auto v = args.get_int("tokens-per-rank", 0, 1LL << 40)) spec.tokens_per_rank = *v;
  if (auto v = args.get_int("ep", 1, 1'000'000)) spec.ep = static_cast<int>(*v);
  if (auto v = args.get("routing")) spec.routing = *v;
  if (auto v = args.get("placement")) spec.placement = *v;
  if (auto v = args.get_int("node-limit", 0, 1'000'000)) spec.node_limit = static_cast<int>(*v);
  if (auto v = args.get_int("device-limit", 0, 1'000'000)) spec.device_limit = static_cast<int>(*v);
  if (auto v = args.get("algorithm")) spec.algorithm = *v;
  if (auto v = args.get("token-dedup")) {
    if (*v != "on" && *v != "off") throw std::invalid_argument("--token-dedup: expected on or off, got '" + *v + "'");
    spec.token_dedup = *v == "on";
  }
  if (auto v = args.get("bytes-per-rank")) {
    try {
      spec.bytes_per_rank = v->find_first_not_of("0123456789") == std::string::npos ? std::stod(*v) : parse_size(*v);
    } catch (const std::exception& e) {
      throw std::invalid_argument("--bytes-per-rank: " + std::string(e.what()));
    }
  }
  if (auto v = args.get_int("seed", 0, std::numeric_limits<long long>::max()))
    spec.seed = static_cast<std::uint64_t>(*v);
  if (auto v = args.get_double("epsilon", 0.0, 1.0)) spec.epsilon = *v;

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

int run(int argc, char** argv) {
  if (argc >= 2) {
    const std::string command = argv[1];
    if (command == "a2a") return run_a2a_command(argc, argv, 2, false);
    if (command == "presets") return run_presets_command(argc, argv, 2);
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
