// Writing and reading Measurements: binary protobuf, or proto3 JSON when the path ends in .json (both read back by
// read_measurements, which tells them apart by content), and a CSV beside it (FILE.pb -> FILE.csv), one row per
// measurement, for spreadsheets and gnuplot. New CSV columns go at the end, so that older readers' column numbers
// hold. Skipped ops are not measurements: they are in the protobuf only (and in bench's text).
#pragma once

#include <string>

#include "kernels/measurements.pb.h"

namespace moesim::kernels::harness {

// Where the CSV goes: `path` with its extension replaced by .csv. Throws std::invalid_argument if `path` itself
// ends in .csv (the CSV would overwrite it).
std::string csv_path_for(const std::string& path);

// Writes `path` (binary, or JSON for .json) and its CSV, each atomically (a temporary file, then a rename).
// Throws std::runtime_error when a file cannot be written.
void write_measurements(const Measurements& measurements, const std::string& path);

// Reads either form; throws std::runtime_error naming the file when it is missing or not Measurements.
Measurements read_measurements(const std::string& path);

std::string measurements_json(const Measurements& measurements);
std::string measurements_csv(const Measurements& measurements);

}  // namespace moesim::kernels::harness
