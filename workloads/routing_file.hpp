// Recorded routing decisions: a file with one row per token and layer, giving the token's experts and, optionally,
// its router scores. moesim replays such files (the routing of a real model run, or one moesim sampled and wrote).
//
// The format is CSV with a header row. The header names the columns:
//   layer,token,e0,e1,...,e{k-1}[,s0,s1,...,s{k-1}]
// so the number of e columns is the top-k, and the s columns (router scores, same order as the experts) are either
// all there or all absent. Each following row is one token of one layer:
//   0,0,17,203,5,88,120,64,31,9
//   0,1,...
// - layer: integer >= 0. Rows of a layer need not be contiguous, but within a layer
// - token: integer, the token's index in the layer's batch: 0, 1, 2, ... in the order the rows appear.
// - e0..e{k-1}: expert ids in [0, num_experts), distinct within a row, in the order the router ranked them (e0 the
//   highest score). Capacity policies that look at order (reroute, drop-score) use that order and the scores.
// - s0..s{k-1}: finite decimal numbers (any scale: logits, probabilities or gate weights; only their order across
//   tokens matters, for drop-score).
// Blank lines and lines starting with '#' are ignored. Errors name the file, the line and what was expected.
//
// When a run needs more tokens than a layer has (ranks x tokens per rank), the layer's tokens are dealt to the
// ranks in order and wrap around: the t-th token of global rank u is the layer's token (u T + t) mod N.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace moesim::workloads {

struct RecordedLayer {
  int layer = 0;
  std::int64_t num_tokens = 0;
  std::vector<std::int32_t> experts;  // [token * num_topk + i]
  std::vector<float> scores;          // same layout; empty when the file has no scores
};

struct RecordedRouting {
  std::string source;  // the file, for messages
  int num_topk = 0;
  bool has_scores = false;
  std::vector<RecordedLayer> layers;  // ascending layer id

  // The layer with this id, or nullptr.
  const RecordedLayer* find(int layer) const;
};

// Reads and validates a routing file; expert ids must lie in [0, num_experts). Throws std::invalid_argument as
// "FILE:LINE: what was expected, got what" (a missing or unreadable file: "FILE: cannot open ...").
RecordedRouting read_routing_file(const std::string& path, int num_experts);
// The same from text (for tests and inline use); `source` names it in messages.
RecordedRouting parse_routing_text(const std::string& text, const std::string& source, int num_experts);

// Writes the routing in the format above. Scores are printed with 9 significant digits, which round-trip a float
// exactly, so write -> read gives back identical experts and scores.
void write_routing(std::ostream& out, const RecordedRouting& routing);

}  // namespace moesim::workloads
