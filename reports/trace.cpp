#include "reports/trace.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <stdexcept>
#include <string>
#include <system_error>
#include <tuple>

#include "reports/writers.hpp"

namespace moesim::reports {
namespace {

constexpr std::int64_t kPsPerUs = 1'000'000;

void append_quoted(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (const char ch : text) {
    const auto byte = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        // JSON forbids raw control characters; DEL is legal but invisible, so it is escaped too.
        if (byte < 0x20 || byte == 0x7f) {
          out += "\\u00";
          out += kHex[byte >> 4];
          out += kHex[byte & 0xf];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

void append_time(std::string& out, std::int64_t ps) {
  // Integer arithmetic, so the text is exact and the same on every platform. The magnitude is taken as unsigned
  // so that INT64_MIN does not overflow.
  if (ps < 0) out += '-';
  const std::uint64_t magnitude = ps < 0 ? 0 - static_cast<std::uint64_t>(ps) : static_cast<std::uint64_t>(ps);
  out += std::to_string(magnitude / kPsPerUs);
  const std::string fraction = std::to_string(magnitude % kPsPerUs);
  out += '.';
  out.append(6 - fraction.size(), '0');
  out += fraction;
}

void append_number(std::string& out, double value) {
  char buf[32];
  const auto result = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, result.ptr);
}

void append_args(std::string& out, const TraceArgs& args) {
  out += ",\"args\":{";
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (i > 0) out += ',';
    append_quoted(out, args[i].first);
    out += ':';
    append_quoted(out, args[i].second);
  }
  out += '}';
}

}  // namespace

std::string trace_time_us(std::int64_t ps) {
  std::string out;
  append_time(out, ps);
  return out;
}

std::string json_quote(std::string_view text) {
  std::string out;
  append_quoted(out, text);
  return out;
}

TraceProcess TraceWriter::add_process(std::string name, int sort_index) {
  processes_.push_back({std::move(name), sort_index, 0});
  return {static_cast<int>(processes_.size()) - 1};
}

TraceThread TraceWriter::add_thread(TraceProcess process, std::string name) {
  if (process.idx < 0 || static_cast<std::size_t>(process.idx) >= processes_.size()) {
    throw std::invalid_argument("trace thread '" + name + "': expected a process of this trace, got index " +
                                std::to_string(process.idx));
  }
  Process& owner = processes_[static_cast<std::size_t>(process.idx)];
  threads_.push_back({process.idx, owner.num_threads++, std::move(name)});
  return {static_cast<int>(threads_.size()) - 1};
}

TraceCounter TraceWriter::add_counter_track(TraceProcess process, std::string_view name, std::string series) {
  if (process.idx < 0 || static_cast<std::size_t>(process.idx) >= processes_.size()) {
    throw std::invalid_argument("trace counter '" + std::string(name) +
                                "': expected a process of this trace, got index " + std::to_string(process.idx));
  }
  counters_.push_back({process.idx, intern(name), std::move(series)});
  return {static_cast<int>(counters_.size()) - 1};
}

void TraceWriter::add_slice(TraceThread thread, std::string_view name, std::string_view category, std::int64_t start_ps,
                            std::int64_t duration_ps, TraceArgs args) {
  check_thread(thread, "slice");
  if (start_ps < 0 || duration_ps < 0) {
    throw std::invalid_argument("trace slice '" + std::string(name) + "': expected start and duration >= 0 ps, got " +
                                std::to_string(start_ps) + " and " + std::to_string(duration_ps));
  }
  add_thread_event(Phase::kSlice, thread, name, category, start_ps, duration_ps, std::move(args));
}

void TraceWriter::add_instant(TraceThread thread, std::string_view name, std::string_view category,
                              std::int64_t time_ps, TraceArgs args) {
  check_thread(thread, "instant");
  if (time_ps < 0) {
    throw std::invalid_argument("trace instant '" + std::string(name) + "': expected time >= 0 ps, got " +
                                std::to_string(time_ps));
  }
  add_thread_event(Phase::kInstant, thread, name, category, time_ps, 0, std::move(args));
}

void TraceWriter::add_counter(TraceCounter counter, std::int64_t time_ps, double value) {
  if (counter.idx < 0 || static_cast<std::size_t>(counter.idx) >= counters_.size()) {
    throw std::invalid_argument("trace counter: expected a counter track of this trace, got index " +
                                std::to_string(counter.idx));
  }
  const Counter& track = counters_[static_cast<std::size_t>(counter.idx)];
  if (time_ps < 0 || !std::isfinite(value)) {
    throw std::invalid_argument("trace counter '" + strings_[static_cast<std::size_t>(track.name_id)] +
                                "': expected time >= 0 ps and a finite value, got " + std::to_string(time_ps) +
                                " and " + std::to_string(value));
  }
  Event event;
  event.time_ps = time_ps;
  event.value = value;
  event.process_idx = track.process_idx;
  event.owner_idx = counter.idx;
  event.name_id = track.name_id;
  event.phase = Phase::kCounter;
  events_.push_back(event);
}

int TraceWriter::intern(std::string_view text) {
  const auto it = string_ids_.find(text);
  if (it != string_ids_.end()) return it->second;
  const int id = static_cast<int>(strings_.size());
  strings_.emplace_back(text);
  string_ids_.emplace(strings_.back(), id);
  return id;
}

void TraceWriter::check_thread(TraceThread thread, const char* what) const {
  if (thread.idx < 0 || static_cast<std::size_t>(thread.idx) >= threads_.size()) {
    throw std::invalid_argument(std::string("trace ") + what + ": expected a thread of this trace, got index " +
                                std::to_string(thread.idx));
  }
}

void TraceWriter::add_thread_event(Phase phase, TraceThread thread, std::string_view name, std::string_view category,
                                   std::int64_t time_ps, std::int64_t duration_ps, TraceArgs args) {
  Event event;
  event.time_ps = time_ps;
  event.duration_ps = duration_ps;
  event.process_idx = threads_[static_cast<std::size_t>(thread.idx)].process_idx;
  event.thread_idx = thread.idx;
  event.owner_idx = thread.idx;
  event.name_id = intern(name);
  event.category_id = intern(category);
  if (!args.empty()) {
    event.args_idx = static_cast<int>(args_.size());
    args_.push_back(std::move(args));
  }
  event.phase = phase;
  events_.push_back(event);
}

void TraceWriter::write(std::ostream& out) const {
  // Thread ids start after the last process id, so none equals a pid.
  const auto num_processes = static_cast<std::int64_t>(processes_.size());
  const auto pid = [](int process_idx) { return std::to_string(process_idx + 1); };
  const auto tid = [&](int thread_idx) { return std::to_string(num_processes + 1 + thread_idx); };

  std::string line;
  bool is_first = true;
  const auto emit = [&] {
    out << (is_first ? "" : ",\n") << line;
    is_first = false;
    line.clear();
  };
  out << "{\"traceEvents\":[\n";

  for (std::size_t p = 0; p < processes_.size(); ++p) {
    const auto idx = static_cast<int>(p);
    line += "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":" + pid(idx) + ",\"args\":{\"name\":";
    append_quoted(line, processes_[p].name);
    line += "}}";
    emit();
    line += "{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":" + pid(idx) +
            ",\"args\":{\"sort_index\":" + std::to_string(processes_[p].sort_index) + "}}";
    emit();
  }
  for (std::size_t t = 0; t < threads_.size(); ++t) {
    const Thread& thread = threads_[t];
    const auto idx = static_cast<int>(t);
    line += "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":" + pid(thread.process_idx) + ",\"tid\":" + tid(idx) +
            ",\"args\":{\"name\":";
    append_quoted(line, thread.name);
    line += "}}";
    emit();
    line += "{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":" + pid(thread.process_idx) + ",\"tid\":" + tid(idx) +
            ",\"args\":{\"sort_index\":" + std::to_string(thread.sort_index) + "}}";
    emit();
  }

  std::vector<std::size_t> order(events_.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const Event& x = events_[a];
    const Event& y = events_[b];
    return std::tie(x.time_ps, x.process_idx, x.thread_idx, y.duration_ps, a) <
           std::tie(y.time_ps, y.process_idx, y.thread_idx, x.duration_ps, b);
  });

  for (const std::size_t e : order) {
    const Event& event = events_[e];
    line += "{\"name\":";
    append_quoted(line, strings_[static_cast<std::size_t>(event.name_id)]);
    if (event.phase == Phase::kCounter) {
      const Counter& counter = counters_[static_cast<std::size_t>(event.owner_idx)];
      line += ",\"ph\":\"C\",\"ts\":";
      append_time(line, event.time_ps);
      line += ",\"pid\":" + pid(event.process_idx) + ",\"args\":{";
      append_quoted(line, counter.series);
      line += ':';
      append_number(line, event.value);
      line += "}}";
      emit();
      continue;
    }
    line += ",\"cat\":";
    append_quoted(line, strings_[static_cast<std::size_t>(event.category_id)]);
    line += event.phase == Phase::kSlice ? ",\"ph\":\"X\",\"ts\":" : ",\"ph\":\"i\",\"s\":\"t\",\"ts\":";
    append_time(line, event.time_ps);
    if (event.phase == Phase::kSlice) {
      line += ",\"dur\":";
      append_time(line, event.duration_ps);
    }
    line += ",\"pid\":" + pid(event.process_idx) + ",\"tid\":" + tid(event.thread_idx);
    if (event.args_idx >= 0) append_args(line, args_[static_cast<std::size_t>(event.args_idx)]);
    line += '}';
    emit();
  }
  out << "\n],\n\"displayTimeUnit\":\"ns\"}\n";
}

void TraceWriter::write_file(const std::string& path) const {
  write_file_atomically(path, [this](std::ostream& out) { write(out); });
}

}  // namespace moesim::reports
