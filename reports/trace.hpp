// Timelines in the Chrome trace event format, the JSON that ui.perfetto.dev and chrome://tracing open:
//
//   {"traceEvents":[
//   {"name":"process_name","ph":"M","pid":1,"args":{"name":"GPU 0"}},
//   ...
//   {"name":"dispatch","cat":"a2a","ph":"X","ts":12.345678,"dur":0.500000,"pid":1,"tid":3,"args":{"bytes":"1024"}},
//   {"name":"nvl0 -> gpu0","ph":"C","ts":12.345678,"pid":2,"args":{"util":0.625}}
//   ],
//   "displayTimeUnit":"ns"}
//
// A process is a row group in the viewer (one per GPU or per pipeline stage); a thread is a track inside it (a
// stream: "compute", "comm"); a slice is a named interval on a thread ("X" event), an instant a point on it ("i"),
// and a counter track a step function of time drawn under its process ("C" events; Perfetto names the track
// "<name> <series>").
//
// Times are integer picoseconds, written as microseconds (the format's unit) with six decimals, so the text holds
// them exactly. Counter values are written as the shortest text that reads back as the same double. Events are
// held in memory and written sorted: metadata first (names and sort indices), then the events by (time, process,
// thread, longer slice first, insertion), counters before the thread events of their process at the same time.
// The order is a pure function of what was added, so writing twice gives byte-identical files. Slices on one
// thread must nest or be disjoint (the viewers draw them as a call stack); the longer-first rule keeps a parent
// ahead of a child that starts with it. Names, categories and args are UTF-8 and are escaped for JSON.
//
// Cost: O(log k) per event added, k the distinct names and categories (interned, so a million slices named
// "expert GEMM" hold the text once); O(n log n) to write n events, streamed to the std::ostream a line at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moesim::reports {

// Handles returned by TraceWriter; only valid with the writer that made them.
struct TraceProcess {
  int idx = -1;
};
struct TraceThread {
  int idx = -1;
};
struct TraceCounter {
  int idx = -1;
};

// Key/value pairs shown when a slice or instant is selected, in the order given.
using TraceArgs = std::vector<std::pair<std::string, std::string>>;

class TraceWriter {
 public:
  // Processes are drawn by ascending sort_index (ties: in the order added). Process ids in the file are 1, 2, ...
  // in the order added; thread ids follow them, so that no thread id equals a process id (Perfetto treats tid ==
  // pid as the process's main thread).
  TraceProcess add_process(std::string name, int sort_index);
  // Threads of a process are drawn in the order added.
  TraceThread add_thread(TraceProcess process, std::string name);
  // A counter track drawn under `process`, with one series.
  TraceCounter add_counter_track(TraceProcess process, std::string_view name, std::string series = "value");

  // Throws std::invalid_argument for a handle this writer did not make, start_ps < 0 or duration_ps < 0.
  void add_slice(TraceThread thread, std::string_view name, std::string_view category, std::int64_t start_ps,
                 std::int64_t duration_ps, TraceArgs args = {});
  // A thread-scoped instant. Throws std::invalid_argument for a foreign handle or time_ps < 0.
  void add_instant(TraceThread thread, std::string_view name, std::string_view category, std::int64_t time_ps,
                   TraceArgs args = {});
  // The counter takes `value` from time_ps until its next point. Throws std::invalid_argument for a foreign
  // handle, time_ps < 0 or a value that is not finite (JSON has no NaN or infinity).
  void add_counter(TraceCounter counter, std::int64_t time_ps, double value);

  std::size_t num_events() const { return events_.size(); }

  // The whole trace as JSON, one event per line.
  void write(std::ostream& out) const;
  // write() into `path` through a temporary file and a rename, so a failed run leaves no half-written trace.
  // Throws std::invalid_argument naming the path if it cannot be written.
  void write_file(const std::string& path) const;

 private:
  enum class Phase : std::uint8_t { kSlice, kInstant, kCounter };
  struct Process {
    std::string name;
    int sort_index = 0;
    int num_threads = 0;
  };
  struct Thread {
    int process_idx = 0;
    int sort_index = 0;  // position among its process's threads
    std::string name;
  };
  struct Counter {
    int process_idx = 0;
    int name_id = 0;
    std::string series;
  };
  struct Event {
    std::int64_t time_ps = 0;
    std::int64_t duration_ps = 0;  // slices only
    double value = 0.0;            // counters only
    int process_idx = 0;
    int thread_idx = -1;  // -1 for counters
    int owner_idx = 0;    // the thread (slice, instant) or counter track it belongs to
    int name_id = 0;
    int category_id = 0;
    int args_idx = -1;  // into args_, -1 when none
    Phase phase = Phase::kSlice;
  };

  int intern(std::string_view text);
  void check_thread(TraceThread thread, const char* what) const;
  void add_thread_event(Phase phase, TraceThread thread, std::string_view name, std::string_view category,
                        std::int64_t time_ps, std::int64_t duration_ps, TraceArgs args);

  std::vector<Process> processes_;
  std::vector<Thread> threads_;
  std::vector<Counter> counters_;
  std::vector<Event> events_;
  std::vector<TraceArgs> args_;
  std::vector<std::string> strings_;
  std::map<std::string, int, std::less<>> string_ids_;
};

// `ps` picoseconds as microseconds with exactly six decimals ("12.345678", "-0.000001"): the trace's time text.
std::string trace_time_us(std::int64_t ps);

// `text` as a JSON string literal, quotes included: '"' and '\' escaped, control characters as \n, \t, ... or
// \u00XX; other bytes (UTF-8) unchanged.
std::string json_quote(std::string_view text);

}  // namespace moesim::reports
