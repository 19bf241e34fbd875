// Routing files: parser and writer of the CSV format documented in routing_file.hpp.
//
// Files may hold tens of millions of rows (a long run of a model with many layers), so the parser reads the whole
// file into one string and makes one pass over it: std::from_chars reads each field where it starts (no search for
// the delimiter first, no copy, no locale), and the only allocations are the growth of each layer's vectors. The row
// itself is never split: a field must end, after optional blanks, at a ',' or at the end of the line. Only when a
// row is wrong does the parser go back over it, to count its columns (a short or long row is reported as such,
// before any field in it is judged) and to quote the offending field. Layers are looked up through a cache of the
// previous row's layer, since rows of one layer usually come together, with a hash map behind it for interleaved
// files.
#include "workloads/routing_file.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <unordered_map>

namespace moesim::workloads {
namespace {

// Above this top-k, duplicate experts in a row are found by sorting a copy rather than comparing all pairs.
constexpr int kPairwiseDuplicateCheckMaxTopk = 32;

// '\r' counts as a blank, so CRLF files need no special case: it is trimmed like trailing spaces.
bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r';
}

std::string_view trim(std::string_view field) {
  while (!field.empty() && is_blank(field.front())) field.remove_prefix(1);
  while (!field.empty() && is_blank(field.back())) field.remove_suffix(1);
  return field;
}

// "e0..e7" (or "e0" for top-1), for messages.
std::string column_range(char prefix, int num_topk) {
  std::string out = prefix + std::string("0");
  if (num_topk > 1) out += ".." + std::string(1, prefix) + std::to_string(num_topk - 1);
  return out;
}

std::string quoted(std::string_view text) {
  return "'" + std::string(text) + "'";
}

class Parser {
 public:
  Parser(std::string_view text, const std::string& source, int num_experts)
      : text_(text), end_(text.data() + text.size()), source_(source), num_experts_(num_experts) {}

  RecordedRouting parse() {
    if (num_experts_ < 1) {
      throw std::invalid_argument(source_ + ": num_experts must be >= 1, got " + std::to_string(num_experts_));
    }
    routing_.source = source_;
    const char* p = text_.data();
    // A byte-order mark, as spreadsheet programs write, is not part of the first column name.
    if (text_.substr(0, 3) == "\xEF\xBB\xBF") p += 3;

    std::int64_t header_line = 0;
    while (p != end_) {
      ++line_no_;
      const char* content = skip_blanks(p);
      if (content == end_ || *content == '\n' || *content == '#') {
        p = next_line(content);
      } else if (header_line == 0) {
        header_line = line_no_;
        parse_header(line_at(p));
        p = next_line(p);
      } else {
        p = parse_row(p);
      }
    }
    if (header_line == 0) {
      fail(line_no_ + 1, "expected the header " + expected_header() + ", got the end of the file");
    }
    if (num_rows_ == 0) fail(header_line, "expected rows after the header, got none");

    std::sort(routing_.layers.begin(), routing_.layers.end(),
              [](const RecordedLayer& a, const RecordedLayer& b) { return a.layer < b.layer; });
    return std::move(routing_);
  }

 private:
  [[noreturn]] void fail(std::int64_t line_no, const std::string& what) const {
    throw std::invalid_argument(source_ + ":" + std::to_string(line_no) + ": " + what);
  }

  static std::string expected_header() {
    return "layer,token,e0,...,e{k-1} (k >= 1), optionally followed by s0,...,s{k-1}";
  }

  const char* skip_blanks(const char* p) const {
    while (p != end_ && is_blank(*p)) ++p;
    return p;
  }
  bool is_field_end(const char* p) const { return p == end_ || *p == ',' || *p == '\n'; }
  // The line that starts at `begin` (or the rest of it, from any point), without its '\n'.
  std::string_view line_at(const char* begin) const {
    const auto* newline = static_cast<const char*>(std::memchr(begin, '\n', static_cast<std::size_t>(end_ - begin)));
    return {begin, static_cast<std::size_t>((newline ? newline : end_) - begin)};
  }
  // The start of the line after the one p is in.
  const char* next_line(const char* p) const {
    const std::string_view rest = line_at(p);
    const char* line_end = rest.data() + rest.size();
    return line_end == end_ ? end_ : line_end + 1;
  }
  // The field that starts at `p`, trimmed, for messages.
  std::string_view field_at(const char* p) const {
    const char* end = p;
    while (!is_field_end(end)) ++end;
    return trim(std::string_view(p, static_cast<std::size_t>(end - p)));
  }

  void parse_header(std::string_view line) {
    std::vector<std::string_view> columns;
    while (true) {
      const std::size_t comma = line.find(',');
      columns.push_back(trim(line.substr(0, comma)));
      if (comma == std::string_view::npos) break;
      line.remove_prefix(comma + 1);
    }
    auto reject = [&](std::size_t column, const std::string& expected) {
      fail(line_no_, "header: expected " + expected_header() + "; column " + std::to_string(column + 1) + " is " +
                         quoted(columns[column]) + ", expected " + expected);
    };
    if (columns[0] != "layer") reject(0, "'layer'");
    if (columns.size() < 2) fail(line_no_, "header: expected " + expected_header() + ", got only 'layer'");
    if (columns[1] != "token") reject(1, "'token'");
    std::size_t num_topk = 0;
    while (2 + num_topk < columns.size() && columns[2 + num_topk] == "e" + std::to_string(num_topk)) ++num_topk;
    if (num_topk == 0) {
      if (columns.size() == 2) fail(line_no_, "header: expected " + expected_header() + ", got no expert columns");
      reject(2, "'e0'");
    }
    const std::size_t num_scores = columns.size() - 2 - num_topk;
    for (std::size_t i = 0; i < num_scores; ++i) {
      const std::size_t column = 2 + num_topk + i;
      if (columns[column] == "s" + std::to_string(i)) continue;
      if (i == 0) reject(column, "'e" + std::to_string(num_topk) + "' or 's0'");
      reject(column, "'s" + std::to_string(i) + "'");
    }
    if (num_scores != 0 && num_scores != num_topk) {
      fail(line_no_, "header: expected s0,...,s" + std::to_string(num_topk - 1) +
                         " (one score per expert column), got " + column_range('s', static_cast<int>(num_scores)));
    }
    if (num_topk > static_cast<std::size_t>(num_experts_)) {
      fail(line_no_, "header: " + std::to_string(num_topk) +
                         " expert columns, but a row's experts must be distinct and there are only " +
                         std::to_string(num_experts_) + " experts");
    }
    routing_.num_topk = static_cast<int>(num_topk);
    routing_.has_scores = num_scores != 0;
    num_columns_ = columns.size();
  }

  // Reads the integer field at p (blanks around it allowed); on success p is left on the ',' or line end after it.
  template <typename Int>
  bool read_integer(const char*& p, Int& value) const {
    const auto result = std::from_chars(skip_blanks(p), end_, value);
    if (result.ec != std::errc()) return false;
    const char* after = skip_blanks(result.ptr);
    if (!is_field_end(after)) return false;
    p = after;
    return true;
  }

  // The same for a score, which must be a finite float. A decimal too small for a float reads as the nearest float
  // (0 or a subnormal) rather than failing, since a softmax written in double precision may hold such values and
  // only the order of the scores matters; one too large for a float is an error, like inf and nan.
  bool read_score(const char*& p, float& value) const {
    const char* start = skip_blanks(p);
    auto result = std::from_chars(start, end_, value);
    if (result.ec == std::errc::result_out_of_range) {
      double wide = 0.0;
      result = std::from_chars(start, end_, wide);
      if (result.ec != std::errc() || !(std::fabs(wide) <= std::numeric_limits<float>::max())) return false;
      value = static_cast<float>(wide);
    } else if (result.ec != std::errc() || !std::isfinite(value)) {
      return false;
    }
    const char* after = skip_blanks(result.ptr);
    if (!is_field_end(after)) return false;
    p = after;
    return true;
  }

  // Moves p past the ',' that ends a field, or reports the row as too short when the line ends there instead.
  void next_field(const char*& p, const char* row) const {
    if (p != end_ && *p == ',') {
      ++p;
      return;
    }
    column_error(row);
  }

  // The row's fields and commas disagree with the header; the count check names the counts. (Every field read stops
  // at the first delimiter after it, so a right count with the line ending early cannot happen; the last line is
  // there so that no mistake of ours can make the parser read on into the next line.)
  [[noreturn]] void column_error(const char* row) const {
    check_column_count(row);
    fail(line_no_, "expected " + std::to_string(num_columns_) + " columns");
  }

  // Throws the column-count error if the row has the wrong number of columns; returns if the count is right.
  void check_column_count(const char* row) const {
    const std::string_view line = line_at(row);
    const auto num_columns = static_cast<std::size_t>(std::count(line.begin(), line.end(), ',')) + 1;
    if (num_columns == num_columns_) return;
    const int num_topk = routing_.num_topk;
    fail(line_no_, "expected " + std::to_string(num_columns_) + " columns (layer,token," + column_range('e', num_topk) +
                       (routing_.has_scores ? "," + column_range('s', num_topk) : std::string()) + "), got " +
                       std::to_string(num_columns));
  }

  // A bad field: a row with the wrong column count is reported as such first, whatever its fields hold.
  [[noreturn]] void field_error(const char* row, const std::string& what) const {
    check_column_count(row);
    fail(line_no_, what);
  }

  // Parses the row that starts at `row`; returns the start of the next line.
  const char* parse_row(const char* const row) {
    const int num_topk = routing_.num_topk;
    const char* p = row;

    int layer_id = 0;
    if (!read_integer(p, layer_id) || layer_id < 0) {
      field_error(row, "layer: expected an integer in [0, " + std::to_string(std::numeric_limits<int>::max()) +
                           "], got " + quoted(field_at(row)));
    }
    next_field(p, row);
    RecordedLayer& layer = layer_of(layer_id);

    std::int64_t token = 0;
    const char* token_field = p;
    const bool is_integer = read_integer(p, token);
    if (!is_integer || token != layer.num_tokens) {
      const std::string_view text = field_at(token_field);
      field_error(row, "token: expected " + std::to_string(layer.num_tokens) + " (the next token of layer " +
                           std::to_string(layer_id) + "), got " + (is_integer ? std::string(text) : quoted(text)));
    }

    for (int i = 0; i < num_topk; ++i) {
      next_field(p, row);
      std::int32_t expert = 0;
      const char* field = p;
      if (!read_integer(p, expert) || expert < 0 || expert >= num_experts_) {
        field_error(row, "e" + std::to_string(i) + ": expected an expert id in [0, " + std::to_string(num_experts_) +
                             "), got " + quoted(field_at(field)));
      }
      layer.experts.push_back(expert);
    }
    check_distinct(row, layer.experts.data() + layer.experts.size() - num_topk);

    for (int i = 0; routing_.has_scores && i < num_topk; ++i) {
      next_field(p, row);
      float score = 0.0f;
      const char* field = p;
      if (!read_score(p, score)) {
        field_error(row, "s" + std::to_string(i) + ": expected a finite number within the float range, got " +
                             quoted(field_at(field)));
      }
      layer.scores.push_back(score);
    }
    if (p != end_ && *p == ',') column_error(row);  // a longer row than the header
    ++layer.num_tokens;
    ++num_rows_;
    return p == end_ ? p : p + 1;
  }

  void check_distinct(const char* row, const std::int32_t* experts) {
    const auto k = static_cast<std::size_t>(routing_.num_topk);
    if (k <= static_cast<std::size_t>(kPairwiseDuplicateCheckMaxTopk)) {
      for (std::size_t i = 1; i < k; ++i) {
        for (std::size_t j = 0; j < i; ++j) {
          if (experts[i] == experts[j]) report_duplicate(row, experts, j, i);
        }
      }
      return;
    }
    sorted_experts_.assign(experts, experts + k);
    std::sort(sorted_experts_.begin(), sorted_experts_.end());
    const auto duplicate = std::adjacent_find(sorted_experts_.begin(), sorted_experts_.end());
    if (duplicate == sorted_experts_.end()) return;
    const std::int32_t* first = std::find(experts, experts + k, *duplicate);
    const std::int32_t* second = std::find(first + 1, experts + k, *duplicate);
    report_duplicate(row, experts, static_cast<std::size_t>(first - experts),
                     static_cast<std::size_t>(second - experts));
  }

  [[noreturn]] void report_duplicate(const char* row, const std::int32_t* experts, std::size_t first,
                                     std::size_t second) const {
    field_error(row, "e" + std::to_string(second) + ": duplicate expert " + std::to_string(experts[second]) +
                         " in the row (e" + std::to_string(first) + " is also " + std::to_string(experts[first]) +
                         "); expected distinct experts");
  }

  RecordedLayer& layer_of(int layer_id) {
    if (last_layer_index_ < routing_.layers.size() && routing_.layers[last_layer_index_].layer == layer_id) {
      return routing_.layers[last_layer_index_];
    }
    const auto [it, inserted] = layer_index_.try_emplace(layer_id, routing_.layers.size());
    if (inserted) {
      routing_.layers.emplace_back();
      routing_.layers.back().layer = layer_id;
    }
    last_layer_index_ = it->second;
    return routing_.layers[last_layer_index_];
  }

  std::string_view text_;
  const char* end_;
  const std::string& source_;
  int num_experts_;
  RecordedRouting routing_;
  std::int64_t line_no_ = 0;
  std::int64_t num_rows_ = 0;
  std::size_t num_columns_ = 0;
  std::vector<std::int32_t> sorted_experts_;  // scratch for the duplicate check of wide rows
  std::unordered_map<int, std::size_t> layer_index_;
  std::size_t last_layer_index_ = std::numeric_limits<std::size_t>::max();
};

// Appends text to a buffer that is handed to the stream in large pieces, not a few bytes per call.
class Writer {
 public:
  explicit Writer(std::ostream& out) : out_(out) { buffer_.reserve(kFlushBytes + 64); }

  void put(std::string_view text) {
    buffer_.append(text);
    if (buffer_.size() >= kFlushBytes) flush();
  }
  void put(char c) {
    buffer_.push_back(c);
    if (buffer_.size() >= kFlushBytes) flush();
  }
  void put_integer(std::int64_t value) {
    char digits[24];
    const auto result = std::to_chars(digits, digits + sizeof(digits), value);
    put(std::string_view(digits, static_cast<std::size_t>(result.ptr - digits)));
  }
  // %.9g: 9 significant digits round-trip every float (FLT_DECIMAL_DIG), and to_chars ignores the locale. The float
  // is widened first, as printf does: the same digits, and libstdc++ formats a double with a precision faster.
  void put_score(float value) {
    char digits[32];
    const auto result =
        std::to_chars(digits, digits + sizeof(digits), static_cast<double>(value), std::chars_format::general, 9);
    put(std::string_view(digits, static_cast<std::size_t>(result.ptr - digits)));
  }
  void flush() {
    out_.write(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
    buffer_.clear();
  }

 private:
  static constexpr std::size_t kFlushBytes = 1 << 16;
  std::ostream& out_;
  std::string buffer_;
};

}  // namespace

const RecordedLayer* RecordedRouting::find(int layer) const {
  const auto it = std::lower_bound(layers.begin(), layers.end(), layer,
                                   [](const RecordedLayer& l, int id) { return l.layer < id; });
  return it != layers.end() && it->layer == layer ? &*it : nullptr;
}

RecordedRouting read_routing_file(const std::string& path, int num_experts) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) throw std::invalid_argument(path + ": cannot open (" + std::generic_category().message(errno) + ")");
  // One read of the whole file when its size is known (one byte more, to see the end of the file in that read);
  // otherwise (a pipe) read into a doubling buffer.
  std::error_code size_error;
  const auto size = std::filesystem::file_size(path, size_error);
  std::string text(size_error ? std::size_t{1} << 16 : static_cast<std::size_t>(size) + 1, '\0');
  std::size_t used = 0;
  while (true) {
    if (used == text.size()) text.resize(2 * text.size());
    const std::size_t wanted = text.size() - used;
    const std::size_t n = std::fread(text.data() + used, 1, wanted, file.get());
    used += n;
    if (n < wanted) break;
  }
  text.resize(used);
  if (std::ferror(file.get())) {
    throw std::invalid_argument(path + ": cannot read (" + std::generic_category().message(errno) + ")");
  }
  return parse_routing_text(text, path, num_experts);
}

RecordedRouting parse_routing_text(const std::string& text, const std::string& source, int num_experts) {
  return Parser(text, source, num_experts).parse();
}

void write_routing(std::ostream& out, const RecordedRouting& routing) {
  const int num_topk = routing.num_topk;
  if (num_topk < 1) {
    throw std::invalid_argument("write_routing: num_topk must be >= 1, got " + std::to_string(num_topk));
  }
  const auto k = static_cast<std::size_t>(num_topk);
  // A layer whose vectors disagree with its token count would print rows that do not read back; say so instead.
  for (const RecordedLayer& layer : routing.layers) {
    const auto expected = static_cast<std::size_t>(layer.num_tokens) * k;
    if (layer.num_tokens < 0 || layer.experts.size() != expected ||
        (routing.has_scores && layer.scores.size() != expected)) {
      throw std::invalid_argument("write_routing: layer " + std::to_string(layer.layer) + ": expected " +
                                  std::to_string(expected) + " experts" + (routing.has_scores ? " and scores" : "") +
                                  " (num_tokens x num_topk), got " + std::to_string(layer.experts.size()) +
                                  (routing.has_scores ? " and " + std::to_string(layer.scores.size()) : ""));
    }
  }

  Writer writer(out);
  writer.put("layer,token");
  for (int i = 0; i < num_topk; ++i) {
    writer.put(",e");
    writer.put_integer(i);
  }
  for (int i = 0; routing.has_scores && i < num_topk; ++i) {
    writer.put(",s");
    writer.put_integer(i);
  }
  writer.put('\n');
  for (const RecordedLayer& layer : routing.layers) {
    for (std::int64_t token = 0; token < layer.num_tokens; ++token) {
      const std::size_t base = static_cast<std::size_t>(token) * k;
      writer.put_integer(layer.layer);
      writer.put(',');
      writer.put_integer(token);
      for (std::size_t i = 0; i < k; ++i) {
        writer.put(',');
        writer.put_integer(layer.experts[base + i]);
      }
      for (std::size_t i = 0; routing.has_scores && i < k; ++i) {
        writer.put(',');
        writer.put_score(layer.scores[base + i]);
      }
      writer.put('\n');
    }
  }
  writer.flush();
}

}  // namespace moesim::workloads
