// Small helpers shared by the test files.
#pragma once

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace moesim::test {

// The message of the std::invalid_argument that `f` throws, or a failure if it throws nothing.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected std::invalid_argument";
  return "";
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace moesim::test
