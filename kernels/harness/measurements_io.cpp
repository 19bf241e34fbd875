#include "kernels/harness/measurements_io.hpp"

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <google/protobuf/util/json_util.h>

namespace moesim::kernels::harness {
namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void write_atomically(const std::string& path, const std::string& bytes) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error(path + ": cannot write");
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::filesystem::remove(temporary, error);
    throw std::runtime_error(path + ": cannot write");
  }
}

// A CSV field: quoted when it holds a comma, a quote or a line break.
std::string field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string out = "\"";
  for (const char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6g", value);
  return buffer;
}

}  // namespace

std::string csv_path_for(const std::string& path) {
  std::filesystem::path p(path);
  if (p.extension() == ".csv")
    throw std::invalid_argument("--out: expected a .pb or .json file (the CSV is written beside it), got '" + path +
                                "'");
  return p.replace_extension(".csv").string();
}

std::string measurements_json(const Measurements& measurements) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(measurements, &json, options);
  if (!status.ok()) throw std::runtime_error("measurements: cannot write JSON: " + status.ToString());
  return json;
}

std::string measurements_csv(const Measurements& ms) {
  std::ostringstream out;
  out << "op,tokens,hidden,experts,topk,ffn,skew,capacity_factor,rows,max_rows_per_expert,active_experts,m,n,k,"
         "dtype,accumulate_dtype,backend,device_name,sm_count,cpu_model,threads,warmup,iterations,min_ms,median_ms,"
         "max_ms,mean_ms,flops,bytes,tflops,gbps,input_sets,rotation_bytes,tool_version,num_gpus,bytes_per_rank,"
         "max_recv_bytes_per_rank,algbw_gbps,busbw_gbps\n";
  for (const Measurement& m : ms.measurements()) {
    const Shape& s = m.shape();
    const Timing& t = m.timing();
    out << field(m.op()) << ',' << s.tokens() << ',' << s.hidden() << ',' << s.experts() << ',' << s.topk() << ','
        << s.ffn() << ',' << field(s.skew()) << ',' << number(s.capacity_factor()) << ',' << s.rows() << ','
        << s.max_rows_per_expert() << ',' << s.active_experts() << ',' << s.m() << ',' << s.n() << ',' << s.k() << ','
        << field(m.dtype()) << ',' << field(m.accumulate_dtype()) << ',' << field(ms.backend()) << ','
        << field(ms.device_name()) << ',' << ms.sm_count() << ',' << field(ms.cpu_model()) << ',' << ms.threads() << ','
        << t.warmup() << ',' << t.iterations() << ',' << number(t.min_ms()) << ',' << number(t.median_ms()) << ','
        << number(t.max_ms()) << ',' << number(t.mean_ms()) << ',' << number(m.flops()) << ',' << number(m.bytes())
        << ',' << number(m.tflops()) << ',' << number(m.gbps()) << ',' << m.input_sets() << ',' << m.rotation_bytes()
        << ',' << field(ms.tool_version()) << ',' << s.num_gpus() << ',' << s.bytes_per_rank() << ','
        << s.max_recv_bytes_per_rank() << ',' << number(m.algbw_gbps()) << ',' << number(m.busbw_gbps()) << '\n';
  }
  return out.str();
}

void write_measurements(const Measurements& measurements, const std::string& path) {
  const std::string csv_path = csv_path_for(path);
  std::string bytes;
  if (ends_with(path, ".json")) {
    bytes = measurements_json(measurements);
  } else if (!measurements.SerializeToString(&bytes)) {
    throw std::runtime_error(path + ": cannot serialise the measurements");
  }
  write_atomically(path, bytes);
  write_atomically(csv_path, measurements_csv(measurements));
}

Measurements read_measurements(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot read");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  Measurements measurements;
  // By name first, as write_measurements chose; a binary file that fails to parse but reads as a JSON object is
  // tried as JSON too (a renamed file).
  std::size_t first = 0;
  while (first < bytes.size() && std::isspace(static_cast<unsigned char>(bytes[first])) != 0) ++first;
  const bool looks_json = first < bytes.size() && bytes[first] == '{';
  if (!ends_with(path, ".json") && measurements.ParseFromString(bytes)) return measurements;
  if (!ends_with(path, ".json") && !looks_json) throw std::runtime_error(path + ": not a Measurements protobuf");
  measurements.Clear();
  const auto status = google::protobuf::util::JsonStringToMessage(bytes, &measurements);
  if (!status.ok()) throw std::runtime_error(path + ": not Measurements JSON: " + status.ToString());
  return measurements;
}

}  // namespace moesim::kernels::harness
