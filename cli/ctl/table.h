// Column-aligned text tables for people: columns separated by two spaces, the last column
// unpadded, empty cells printed as "-".
#pragma once

#include <string>
#include <vector>

namespace agentlab::ctl {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  size_t size() const { return rows_.size(); }
  // Header plus rows, each line ending in '\n'. Width counts UTF-8 code points.
  std::string render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace agentlab::ctl
