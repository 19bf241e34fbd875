// A parallel layout of a training or inference step: how the GPUs split the model and the batch.
//
// Theory of operation. Dense parts (attention, dense FFNs, shared experts, embeddings) are split by tensor (tp),
// pipeline (pp) and data (dp) parallelism, dp x tp x pp = GPUs. Routed experts are split differently inside each
// pipeline stage: the stage's dp x tp ranks are regrouped as expert-tensor (etp) x expert (ep) x expert-data (edp)
// ranks, edp = dp x tp / (ep x etp) (Megatron-Core's "MoE parallel folding": the expert-parallel group is carved out
// of the data x tensor ranks of a stage, so ep may exceed dp, and an All-to-All never crosses a pipeline stage).
// vpp > 1 interleaves vpp model chunks per pipeline rank (Megatron's interleaved 1F1B). A global batch of gbs
// sequences is split over dp replicas into micro-batches of mbs sequences: gbs / (mbs x dp) micro-batches per step.
// The sequence length is the workload's, not the layout's: functions that need it take it as a parameter.
//
// Text form (parse_layout), keys in any order, each at most once, every value an integer >= 1:
//   dp=8,tp=2,pp=4,ep=16,etp=1,vpp=1,mbs=1,gbs=512
// Defaults: tp = pp = ep = etp = vpp = mbs = 1; dp = GPUs / (tp x pp); gbs = mbs x dp (one micro-batch per step).
//
// Rank mapping (Megatron-Core's default order "tp-cp-ep-dp-pp", without context parallelism):
//   dense:   rank = tp_idx + tp x (dp_idx + dp x pp_idx)                       (tp fastest, then dp, then pp)
//   experts: rank = etp_idx + etp x (ep_idx + ep x (edp_idx + edp x pp_idx))   (etp, then ep, then edp, then pp)
// Both orders give pipeline stage p the same block of dp x tp consecutive ranks, so a TP group is a run of tp
// consecutive ranks (one node when tp <= GPUs per node) and every EP group lies inside one pipeline stage.
//
// Validity (validate_layout), Megatron-Core's rules; each message says what must divide what:
//   - dp x tp x pp = GPUs;
//   - tp divides num_attention_heads; tp and num_key_value_heads divide one another: tp | kv_heads splits the KV
//     heads, kv_heads | tp replicates each KV head on tp / kv_heads ranks (what vLLM and TensorRT-LLM do; Megatron-
//     Core itself requires tp | kv_heads). MLA has kv_heads = heads. A model without attention described
//     (num_attention_heads 0) skips both checks;
//   - layers per virtual stage an integer. Either pp x vpp divides num_layers (Megatron's even split: the embedding
//     rides on the first stage, the output head, loss and MTP modules on the last, none counted as layers), or, when
//     it does not, pp x vpp divides num_layers + 2 + num_mtp_layers: the embedding, the loss (with the head) and each
//     MTP module counted as one layer, as Megatron-Core's --account-for-embedding-in-pipeline-split and
//     --account-for-loss-in-pipeline-split do (MTP counted as its --pipeline-model-parallel-layout does). The first
//     virtual stage then holds one layer fewer and the last 1 + num_mtp_layers fewer. DeepSeek-V3 (61 layers, 1 MTP
//     module) on 16 stages: 64 units, 4 a stage: layers 0-2 with the embedding, 4 on each of the next 14, 2 with the
//     MTP module and the loss on the last. (61 is prime: an even split would allow pp 1 or 61 only.);
//   - ep divides num_experts; ep x etp divides dp x tp (see above);
//   - etp divides moe_intermediate_size; tp divides intermediate_size (with dense layers) and
//     shared_expert_intermediate_size (with shared experts: Megatron splits shared experts over tp, like dense FFNs);
//   - mbs x dp divides gbs;
//   - vpp > 1 needs pp >= 2, and pp divides the number of micro-batches (Megatron's interleaved schedule).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "workloads/model.hpp"

namespace moesim::workloads {

struct ParallelLayout {
  int dp = 1;
  int tp = 1;
  int pp = 1;
  int ep = 1;
  int etp = 1;
  int vpp = 1;           // model chunks per pipeline rank (interleaved 1F1B); 1 = not interleaved
  int mbs = 1;           // sequences per micro-batch
  std::int64_t gbs = 1;  // sequences per global batch (per optimizer step)

  int num_gpus() const { return dp * tp * pp; }
  // Expert-data-parallel size dp x tp / (ep x etp): the ranks of a stage that hold the same experts.
  int edp() const { return dp * tp / (ep * etp); }
};

bool operator==(const ParallelLayout& a, const ParallelLayout& b);

// "dp=8,tp=2,pp=4,ep=16,etp=1,vpp=1,mbs=1,gbs=512": every key, in this order; parse_layout reads it back.
std::string format_layout(const ParallelLayout& layout);

// Parses the text form (header); `num_gpus` derives dp when omitted. Throws std::invalid_argument naming the key:
// "layout: tp: must be an integer >= 1, got 'x'", unknown and duplicate keys, an item without '=', and a dp that
// cannot be derived (GPUs not divisible by tp x pp). Structural checks only; validate_layout checks the rest.
ParallelLayout parse_layout(std::string_view text, int num_gpus);

// Every rule of the header the layout breaks, in the header's order, one line each (empty: valid).
std::vector<std::string> layout_problems(const ParallelLayout& layout, const MoeModel& model, int num_gpus);
// Throws std::invalid_argument "layout dp=..,...: <the first problem>" unless the layout is valid.
void validate_layout(const ParallelLayout& layout, const MoeModel& model, int num_gpus);

// gbs / (mbs x dp): micro-batches each data-parallel replica runs per step.
std::int64_t num_microbatches(const ParallelLayout& layout);

// Number of layers of each virtual pipeline stage, in model order (pp x vpp entries; the split rule above).
// Virtual stage v is held by pipeline rank v % pp as its chunk v / pp (Megatron's interleaved assignment).
// Throws std::invalid_argument when neither split works.
std::vector<int> virtual_stage_layers(const MoeModel& model, const ParallelLayout& layout);
// The layer indices (0 .. num_layers - 1) that pipeline rank pp_idx holds, ascending.
std::vector<int> stage_layer_indices(const MoeModel& model, const ParallelLayout& layout, int pp_idx);

enum class ParallelGroup { kTp, kDp, kPp, kEp, kEtp, kEdp };
// "tp", "dp", "pp", "ep", "etp", "edp".
const char* parallel_group_name(ParallelGroup group);

// Coordinates of one global rank in both orders of the header.
struct RankCoords {
  int tp_idx = 0;
  int dp_idx = 0;
  int pp_idx = 0;
  int etp_idx = 0;
  int ep_idx = 0;
  int edp_idx = 0;
};

// These need only a consistent shape (every size >= 1, ep x etp dividing dp x tp) and a rank in
// [0, num_gpus()); they throw std::invalid_argument otherwise.
RankCoords rank_coords(const ParallelLayout& layout, int rank);
// The global ranks of `rank`'s group of that kind, ascending by the group's own index (which is ascending rank).
std::vector<int> group_ranks(const ParallelLayout& layout, ParallelGroup group, int rank);
// Every group of that kind, ordered by their smallest rank; together they partition 0 .. num_gpus() - 1.
std::vector<std::vector<int>> all_groups(const ParallelLayout& layout, ParallelGroup group);

struct EnumerateOptions {
  std::vector<int> mbs_candidates{1};
  std::int64_t gbs = 0;  // the global batch every layout must run; required (>= 1)
  int max_tp = 8;        // largest tp and etp, e.g. the GPUs of one NVLink domain
  bool allow_etp = false;
  std::vector<int> vpp_candidates{1};
};

struct RejectedLayout {
  ParallelLayout layout;
  std::string reason;  // the first problem, as layout_problems words it
};

struct LayoutEnumeration {
  std::vector<ParallelLayout> valid;
  std::vector<RejectedLayout> rejected;
};

// Every candidate: tp | GPUs, pp | GPUs / tp (dp the rest), ep | dp x tp, etp | dp x tp / ep (etp = 1 unless
// allow_etp), then each vpp and mbs candidate, in that nesting order, ascending (deterministic). A candidate is
// valid when tp, etp <= max_tp and validate_layout accepts it; otherwise it is rejected with the reason. Throws
// std::invalid_argument for num_gpus < 1, gbs < 1, empty candidate lists or candidates < 1, max_tp < 1.
LayoutEnumeration enumerate_layouts(const MoeModel& model, int num_gpus, const EnumerateOptions& options);

}  // namespace moesim::workloads
