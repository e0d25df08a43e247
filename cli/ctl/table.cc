#include "cli/ctl/table.h"

#include <algorithm>

namespace agentlab::ctl {
namespace {

size_t display_width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;  // count code points, not continuation bytes
  return n;
}

}  // namespace

std::string Table::render() const {
  const size_t columns = header_.size();
  std::vector<size_t> width(columns, 0);
  auto cell = [](const std::vector<std::string>& row, size_t i) -> std::string {
    if (i >= row.size() || row[i].empty()) return "-";
    return row[i];
  };
  for (size_t i = 0; i < columns; ++i) {
    width[i] = display_width(header_[i]);
    for (const auto& row : rows_) width[i] = std::max(width[i], display_width(cell(row, i)));
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& row, bool is_header) {
    std::string text;
    for (size_t i = 0; i < columns; ++i) {
      const std::string c = is_header ? header_[i] : cell(row, i);
      text += c;
      if (i + 1 < columns) text.append(width[i] - display_width(c) + 2, ' ');
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out += text + "\n";
  };
  line(header_, true);
  for (const auto& row : rows_) line(row, false);
  return out;
}

}  // namespace agentlab::ctl
