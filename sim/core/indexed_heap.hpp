// A binary min-heap of integer ids keyed by doubles, with O(log n) update and removal of any id.
//
// The max-min solver keeps links in it keyed by their fair share, and the network keeps active flows keyed by
// their predicted finish time; both change keys of items already in the heap, which a plain priority queue
// cannot do without piling up stale entries. Ties are broken by id so that the order is fully deterministic.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

namespace moesim::sim {

class IndexedMinHeap {
 public:
  static constexpr std::uint32_t kAbsent = std::numeric_limits<std::uint32_t>::max();

  bool empty() const { return heap_.empty(); }
  std::size_t size() const { return heap_.size(); }
  std::uint32_t top() const { return heap_.front(); }
  double top_key() const { return key_[heap_.front()]; }
  double key(std::uint32_t id) const { return key_[id]; }
  bool contains(std::uint32_t id) const { return id < pos_.size() && pos_[id] != kAbsent; }
  // The heap array, for read-only walks (a node's children are at 2i + 1 and 2i + 2).
  const std::vector<std::uint32_t>& items() const { return heap_; }

  void clear() {
    for (std::uint32_t id : heap_) pos_[id] = kAbsent;
    heap_.clear();
  }

  // Inserts `id` or, if present, changes its key.
  void set(std::uint32_t id, double key) {
    if (id >= pos_.size()) {
      pos_.resize(static_cast<std::size_t>(id) + 1, kAbsent);
      key_.resize(static_cast<std::size_t>(id) + 1, 0.0);
    }
    if (pos_[id] == kAbsent) {
      key_[id] = key;
      pos_[id] = static_cast<std::uint32_t>(heap_.size());
      heap_.push_back(id);
      sift_up(pos_[id]);
      return;
    }
    const double old = key_[id];
    key_[id] = key;
    if (key < old) {
      sift_up(pos_[id]);
    } else if (key > old) {
      sift_down(pos_[id]);
    }
  }

  std::uint32_t pop() {
    const std::uint32_t id = heap_.front();
    remove_at(0);
    return id;
  }

  void remove(std::uint32_t id) {
    if (contains(id)) remove_at(pos_[id]);
  }

  // Removes every id whose key is <= threshold and appends them to `out` (in a deterministic order). When
  // many go at once (a uniform collective ends at one instant), the rest is re-heapified in O(n) instead of
  // paying a sift per removal.
  void pop_all_at_most(double threshold, std::vector<std::uint32_t>& out) {
    const std::size_t first = out.size();
    collect_at_most(threshold, out);
    const std::size_t count = out.size() - first;
    if (count == 0) return;
    if (count * 4 < heap_.size()) {
      for (std::size_t i = first; i < out.size(); ++i) remove_at(pos_[out[i]]);
      return;
    }
    for (std::size_t i = first; i < out.size(); ++i) pos_[out[i]] = kAbsent;
    std::size_t kept = 0;
    for (std::uint32_t id : heap_) {
      if (pos_[id] != kAbsent) heap_[kept++] = id;
    }
    heap_.resize(kept);
    for (std::size_t i = 0; i < kept; ++i) pos_[heap_[i]] = static_cast<std::uint32_t>(i);
    for (std::size_t i = kept / 2; i-- > 0;) sift_down(i);
  }

  // Appends the ids whose key is <= threshold, without removing them: they form a subtree at the top.
  void collect_at_most(double threshold, std::vector<std::uint32_t>& out) const {
    if (heap_.empty() || key_[heap_.front()] > threshold) return;
    stack_.assign(1, 0);
    while (!stack_.empty()) {
      const std::size_t i = stack_.back();
      stack_.pop_back();
      if (key_[heap_[i]] > threshold) continue;
      out.push_back(heap_[i]);
      if (2 * i + 1 < heap_.size()) stack_.push_back(2 * i + 1);
      if (2 * i + 2 < heap_.size()) stack_.push_back(2 * i + 2);
    }
  }

  // Ensures ids below `n` can be used without growing on the hot path.
  void reserve_ids(std::size_t n) {
    if (pos_.size() < n) {
      pos_.resize(n, kAbsent);
      key_.resize(n, 0.0);
    }
  }

 private:
  bool less(std::uint32_t a, std::uint32_t b) const { return key_[a] < key_[b] || (key_[a] == key_[b] && a < b); }

  void place(std::size_t i, std::uint32_t id) {
    heap_[i] = id;
    pos_[id] = static_cast<std::uint32_t>(i);
  }

  void sift_up(std::size_t i) {
    const std::uint32_t id = heap_[i];
    while (i > 0) {
      const std::size_t parent = (i - 1) / 2;
      if (!less(id, heap_[parent])) break;
      place(i, heap_[parent]);
      i = parent;
    }
    place(i, id);
  }

  void sift_down(std::size_t i) {
    const std::uint32_t id = heap_[i];
    const std::size_t n = heap_.size();
    for (;;) {
      std::size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && less(heap_[child + 1], heap_[child])) ++child;
      if (!less(heap_[child], id)) break;
      place(i, heap_[child]);
      i = child;
    }
    place(i, id);
  }

  void remove_at(std::size_t i) {
    const std::uint32_t id = heap_[i];
    pos_[id] = kAbsent;
    const std::uint32_t last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;
    place(i, last);
    sift_down(i);
    sift_up(pos_[last]);
  }

  std::vector<std::uint32_t> heap_;
  std::vector<std::uint32_t> pos_;
  std::vector<double> key_;
  mutable std::vector<std::size_t> stack_;  // scratch for collect_at_most
};

}  // namespace moesim::sim
