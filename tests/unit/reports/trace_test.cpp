#include "reports/trace.hpp"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace moesim::reports {
namespace {

std::string written(const TraceWriter& trace) {
  std::ostringstream out;
  trace.write(out);
  return out.str();
}

// Two GPUs with a compute and a comm stream each, a link process with one utilisation counter; events added out of
// time order on purpose.
TraceWriter small_trace() {
  TraceWriter trace;
  const TraceProcess gpu0 = trace.add_process("GPU 0", 0);
  const TraceProcess gpu1 = trace.add_process("GPU 1", 1);
  const TraceProcess links = trace.add_process("links", 2);
  const TraceThread compute0 = trace.add_thread(gpu0, "compute");
  const TraceThread comm0 = trace.add_thread(gpu0, "comm");
  const TraceThread compute1 = trace.add_thread(gpu1, "compute");
  const TraceCounter util = trace.add_counter_track(links, "nvl0 -> gpu1", "util");
  trace.add_slice(compute1, "expert GEMM", "compute", 7'000'000, 2'500'001, {{"tokens", "4096"}});
  trace.add_slice(compute0, "attention", "compute", 0, 3'000'000);
  trace.add_slice(comm0, "dispatch", "a2a", 3'000'000, 4'000'000, {{"bytes", "1048576"}, {"peers", "8"}});
  trace.add_instant(comm0, "step end", "marker", 12'000'000);
  trace.add_counter(util, 3'000'000, 0.625);
  trace.add_counter(util, 7'000'000, 0.0);
  return trace;
}

TEST(TraceWriter, WritesJsonThatParsesBackWithEveryEvent) {
  const YAML::Node root = YAML::Load(written(small_trace()));
  EXPECT_EQ(root["displayTimeUnit"].as<std::string>(), "ns");
  const YAML::Node events = root["traceEvents"];
  ASSERT_TRUE(events.IsSequence());
  // 3 processes and 3 threads, each a name and a sort index, then 3 slices, 1 instant and 2 counter points.
  ASSERT_EQ(events.size(), 12u + 6u);

  std::vector<std::tuple<std::string, int, int>> process_names;  // name, pid, sort index
  std::vector<std::tuple<std::string, int, int>> thread_names;   // name, pid, tid
  for (std::size_t i = 0; i < 12; ++i) {
    const YAML::Node e = events[i];
    EXPECT_EQ(e["ph"].as<std::string>(), "M") << "metadata comes first";
    const auto name = e["name"].as<std::string>();
    if (name == "process_name") process_names.emplace_back(e["args"]["name"].as<std::string>(), e["pid"].as<int>(), 0);
    if (name == "thread_name") {
      thread_names.emplace_back(e["args"]["name"].as<std::string>(), e["pid"].as<int>(), e["tid"].as<int>());
    }
    if (name == "process_sort_index") {
      EXPECT_EQ(e["args"]["sort_index"].as<int>(), e["pid"].as<int>() - 1);
    }
  }
  ASSERT_EQ(process_names.size(), 3u);
  EXPECT_EQ(process_names[0], std::make_tuple(std::string("GPU 0"), 1, 0));
  EXPECT_EQ(process_names[1], std::make_tuple(std::string("GPU 1"), 2, 0));
  EXPECT_EQ(process_names[2], std::make_tuple(std::string("links"), 3, 0));
  // Thread ids follow the process ids, so none is mistaken for a process's main thread.
  ASSERT_EQ(thread_names.size(), 3u);
  EXPECT_EQ(thread_names[0], std::make_tuple(std::string("compute"), 1, 4));
  EXPECT_EQ(thread_names[1], std::make_tuple(std::string("comm"), 1, 5));
  EXPECT_EQ(thread_names[2], std::make_tuple(std::string("compute"), 2, 6));

  // Sorted by time, then process, then thread; times in microseconds, exact to the picosecond.
  const YAML::Node attention = events[12];
  EXPECT_EQ(attention["name"].as<std::string>(), "attention");
  EXPECT_EQ(attention["cat"].as<std::string>(), "compute");
  EXPECT_EQ(attention["ph"].as<std::string>(), "X");
  EXPECT_EQ(attention["ts"].as<double>(), 0.0);
  EXPECT_EQ(attention["dur"].as<double>(), 3.0);
  EXPECT_EQ(attention["pid"].as<int>(), 1);
  EXPECT_EQ(attention["tid"].as<int>(), 4);
  EXPECT_FALSE(attention["args"]);

  const YAML::Node dispatch = events[13];
  EXPECT_EQ(dispatch["name"].as<std::string>(), "dispatch");
  EXPECT_EQ(dispatch["ts"].as<double>(), 3.0);
  EXPECT_EQ(dispatch["dur"].as<double>(), 4.0);
  EXPECT_EQ(dispatch["tid"].as<int>(), 5);
  EXPECT_EQ(dispatch["args"]["bytes"].as<std::string>(), "1048576");
  EXPECT_EQ(dispatch["args"]["peers"].as<std::string>(), "8");

  const YAML::Node counter_on = events[14];
  EXPECT_EQ(counter_on["name"].as<std::string>(), "nvl0 -> gpu1");
  EXPECT_EQ(counter_on["ph"].as<std::string>(), "C");
  EXPECT_EQ(counter_on["ts"].as<double>(), 3.0);
  EXPECT_EQ(counter_on["pid"].as<int>(), 3);
  EXPECT_EQ(counter_on["args"]["util"].as<double>(), 0.625);

  const YAML::Node gemm = events[15];
  EXPECT_EQ(gemm["name"].as<std::string>(), "expert GEMM");
  EXPECT_EQ(gemm["ts"].as<double>(), 7.0);
  EXPECT_EQ(gemm["dur"].as<double>(), 2.500001);
  EXPECT_EQ(gemm["pid"].as<int>(), 2);
  EXPECT_EQ(gemm["args"]["tokens"].as<std::string>(), "4096");

  const YAML::Node counter_off = events[16];
  EXPECT_EQ(counter_off["ph"].as<std::string>(), "C");
  EXPECT_EQ(counter_off["ts"].as<double>(), 7.0);
  EXPECT_EQ(counter_off["args"]["util"].as<double>(), 0.0);

  const YAML::Node instant = events[17];
  EXPECT_EQ(instant["name"].as<std::string>(), "step end");
  EXPECT_EQ(instant["ph"].as<std::string>(), "i");
  EXPECT_EQ(instant["s"].as<std::string>(), "t");
  EXPECT_EQ(instant["ts"].as<double>(), 12.0);
  EXPECT_FALSE(instant["dur"]);
}

TEST(TraceWriter, TimesKeepPicosecondResolution) {
  EXPECT_EQ(trace_time_us(0), "0.000000");
  EXPECT_EQ(trace_time_us(1), "0.000001");
  EXPECT_EQ(trace_time_us(999'999), "0.999999");
  EXPECT_EQ(trace_time_us(1'000'000), "1.000000");
  EXPECT_EQ(trace_time_us(12'345'678'901), "12345.678901");
  EXPECT_EQ(trace_time_us(-1), "-0.000001");
  EXPECT_EQ(trace_time_us(std::numeric_limits<std::int64_t>::max()), "9223372036854.775807");
  EXPECT_EQ(trace_time_us(std::numeric_limits<std::int64_t>::min()), "-9223372036854.775808");

  TraceWriter trace;
  const TraceThread t = trace.add_thread(trace.add_process("p", 0), "t");
  trace.add_slice(t, "s", "c", 1, 1'000'001);
  const std::string json = written(trace);
  EXPECT_NE(json.find("\"ts\":0.000001,\"dur\":1.000001,"), std::string::npos) << json;
}

TEST(TraceWriter, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(json_quote("plain"), "\"plain\"");
  EXPECT_EQ(json_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(json_quote("\n\t\r\b\f"), "\"\\n\\t\\r\\b\\f\"");
  EXPECT_EQ(json_quote(std::string("\x01\x1f\x7f", 3)), "\"\\u0001\\u001f\\u007f\"");
  EXPECT_EQ(json_quote(std::string("nul\0end", 7)), "\"nul\\u0000end\"");
  EXPECT_EQ(json_quote("GPU \xc3\xa9"), "\"GPU \xc3\xa9\"") << "UTF-8 passes through";

  // Every string the writer emits goes through the escaping: names, categories, args, process, thread, counter
  // and series names. Parsed back, each is the original text.
  const std::string nasty = "say \"hi\"\\ \x01 tab\there\nline";
  TraceWriter trace;
  const TraceProcess p = trace.add_process(nasty, 0);
  const TraceThread t = trace.add_thread(p, nasty);
  const TraceCounter c = trace.add_counter_track(p, nasty, nasty);
  trace.add_slice(t, nasty, nasty, 0, 1, {{nasty, nasty}});
  trace.add_counter(c, 0, 1.5);
  const std::string json = written(trace);
  const YAML::Node events = YAML::Load(json)["traceEvents"];
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events[0]["args"]["name"].as<std::string>(), nasty);
  EXPECT_EQ(events[2]["args"]["name"].as<std::string>(), nasty);
  EXPECT_EQ(events[4]["ph"].as<std::string>(), "C");
  EXPECT_EQ(events[4]["name"].as<std::string>(), nasty);
  EXPECT_EQ(events[4]["args"][nasty].as<double>(), 1.5);
  EXPECT_EQ(events[5]["name"].as<std::string>(), nasty);
  EXPECT_EQ(events[5]["cat"].as<std::string>(), nasty);
  EXPECT_EQ(events[5]["args"][nasty].as<std::string>(), nasty);
  // No raw control character survives in the file.
  for (const char ch : json) EXPECT_TRUE(ch == '\n' || static_cast<unsigned char>(ch) >= 0x20);
}

TEST(TraceWriter, CounterValuesRoundTrip) {
  TraceWriter trace;
  const TraceCounter c = trace.add_counter_track(trace.add_process("links", 0), "util");
  const std::vector<double> values = {0.1, 1.0 / 3.0, 1e-300, 123456789.125, -2.5, 0.0};
  for (std::size_t i = 0; i < values.size(); ++i) trace.add_counter(c, static_cast<std::int64_t>(i), values[i]);
  const std::string json = written(trace);
  EXPECT_NE(json.find("\"args\":{\"value\":0.1}"), std::string::npos) << "shortest form: " << json;
  const YAML::Node events = YAML::Load(json)["traceEvents"];
  ASSERT_EQ(events.size(), 2 + values.size());
  for (std::size_t i = 0; i < values.size(); ++i) EXPECT_EQ(events[2 + i]["args"]["value"].as<double>(), values[i]);
}

TEST(TraceWriter, EventsAreSortedByTimeProcessThreadThenInsertion) {
  TraceWriter trace;
  const TraceProcess a = trace.add_process("a", 1);
  const TraceProcess b = trace.add_process("b", 0);
  const TraceThread a0 = trace.add_thread(a, "a0");
  const TraceThread a1 = trace.add_thread(a, "a1");
  const TraceThread b0 = trace.add_thread(b, "b0");
  const TraceCounter ca = trace.add_counter_track(a, "ca");
  // Added in reverse; at equal times process a (pid 1) comes before b, thread a0 before a1, a counter before its
  // process's threads, and a longer slice before a shorter one starting with it (its parent). Equal keys keep
  // insertion order.
  trace.add_slice(b0, "b0 late", "x", 5, 1);
  trace.add_slice(a1, "a1 at 2", "x", 2, 1);
  trace.add_slice(b0, "b0 at 2", "x", 2, 1);
  trace.add_slice(a0, "a0 child", "x", 2, 1);
  trace.add_slice(a0, "a0 parent", "x", 2, 3);
  trace.add_instant(a0, "a0 mark 1", "x", 2);
  trace.add_instant(a0, "a0 mark 2", "x", 2);
  trace.add_counter(ca, 2, 1.0);
  trace.add_slice(a1, "a1 first", "x", 0, 1);

  const YAML::Node events = YAML::Load(written(trace))["traceEvents"];
  std::vector<std::string> names;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i]["ph"].as<std::string>() != "M") names.push_back(events[i]["name"].as<std::string>());
  }
  const std::vector<std::string> expected = {"a1 first",  "ca",      "a0 parent", "a0 child", "a0 mark 1",
                                             "a0 mark 2", "a1 at 2", "b0 at 2",   "b0 late"};
  EXPECT_EQ(names, expected);
  // The sort index decides where the viewer draws b (first); the pid order stays the order added.
  EXPECT_EQ(events[0]["args"]["name"].as<std::string>(), "a");
  EXPECT_EQ(events[1]["args"]["sort_index"].as<int>(), 1);
  EXPECT_EQ(events[3]["args"]["sort_index"].as<int>(), 0);
  // Thread sort indices count within their process.
  EXPECT_EQ(events[7]["args"]["sort_index"].as<int>(), 1);  // a1
  EXPECT_EQ(events[9]["args"]["sort_index"].as<int>(), 0);  // b0
}

TEST(TraceWriter, WritingTwiceIsByteIdentical) {
  const TraceWriter trace = small_trace();
  const std::string first = written(trace);
  EXPECT_EQ(first, written(trace));
  EXPECT_EQ(first, written(small_trace()));

  const auto path = std::filesystem::temp_directory_path() / "moesim_trace_test.json";
  trace.write_file(path.string());
  std::ifstream file(path, std::ios::binary);
  const std::string from_file((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  EXPECT_EQ(from_file, first);
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".tmp"));
  std::filesystem::remove(path);
}

TEST(TraceWriter, EmptyTraceIsValidJson) {
  const YAML::Node root = YAML::Load(written(TraceWriter()));
  EXPECT_TRUE(root["traceEvents"].IsSequence());
  EXPECT_EQ(root["traceEvents"].size(), 0u);
}

TEST(TraceWriter, RejectsBadInputs) {
  TraceWriter trace;
  const TraceProcess p = trace.add_process("p", 0);
  const TraceThread t = trace.add_thread(p, "t");
  const TraceCounter c = trace.add_counter_track(p, "c");
  const auto message = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(message([&] { trace.add_thread(TraceProcess{3}, "x"); }),
            "trace thread 'x': expected a process of this trace, got index 3");
  EXPECT_EQ(message([&] { trace.add_counter_track(TraceProcess{}, "x"); }),
            "trace counter 'x': expected a process of this trace, got index -1");
  EXPECT_EQ(message([&] { trace.add_slice(TraceThread{1}, "s", "c", 0, 1); }),
            "trace slice: expected a thread of this trace, got index 1");
  EXPECT_EQ(message([&] { trace.add_slice(t, "s", "c", -1, 1); }),
            "trace slice 's': expected start and duration >= 0 ps, got -1 and 1");
  EXPECT_EQ(message([&] { trace.add_slice(t, "s", "c", 0, -2); }),
            "trace slice 's': expected start and duration >= 0 ps, got 0 and -2");
  EXPECT_EQ(message([&] { trace.add_instant(t, "i", "c", -5); }), "trace instant 'i': expected time >= 0 ps, got -5");
  EXPECT_EQ(message([&] { trace.add_counter(TraceCounter{7}, 0, 1.0); }),
            "trace counter: expected a counter track of this trace, got index 7");
  EXPECT_EQ(message([&] { trace.add_counter(c, 0, std::numeric_limits<double>::quiet_NaN()); }),
            "trace counter 'c': expected time >= 0 ps and a finite value, got 0 and nan");
  EXPECT_EQ(message([&] { trace.write_file("/nonexistent-dir/trace.json"); }),
            "/nonexistent-dir/trace.json: cannot write file");
  EXPECT_EQ(trace.num_events(), 0u);
}

}  // namespace
}  // namespace moesim::reports
