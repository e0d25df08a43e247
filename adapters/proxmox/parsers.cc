#include "adapters/proxmox/parsers.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>

namespace agentlab::proxmox {

using engine::GuestAddress;
using engine::GuestInterface;
using engine::VmInfo;
using engine::VmPower;
using nlohmann::json;

namespace {

constexpr std::string_view kSpace = " \t\r\n\v\f";

std::string_view trim(std::string_view s) {
  size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(kSpace);
  return s.substr(b, e - b + 1);
}

std::vector<std::string_view> split_lines(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    size_t nl = s.find('\n');
    out.push_back(s.substr(0, nl));
    if (nl == std::string_view::npos) break;
    s.remove_prefix(nl + 1);
  }
  return out;
}

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t b = s.find_first_not_of(kSpace, i);
    if (b == std::string_view::npos) break;
    size_t e = s.find_first_of(kSpace, b);
    if (e == std::string_view::npos) e = s.size();
    out.push_back(s.substr(b, e - b));
    i = e;
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Quotes a fragment of Proxmox output for an error message: bounded, control and non-ASCII
// bytes escaped, so hostile output cannot break a log line.
std::string excerpt(std::string_view s) {
  constexpr size_t kMax = 120;
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (s.size() > kMax) out += "...";
  out += "\"";
  return out;
}

template <class T>
std::optional<T> to_number(std::string_view s, int base = 10) {
  T value{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), value, base);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

std::optional<double> to_double(std::string_view s) {
  double value = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

// Parses JSON without exceptions; nlohmann rejects invalid UTF-8 inside strings.
std::optional<json> parse_json(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

// Unwraps the REST envelope when present.
const json& unwrap_data(const json& j) {
  if (j.is_object()) {
    auto it = j.find("data");
    if (it != j.end()) return *it;
  }
  return j;
}

std::optional<uint64_t> json_u64(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end()) return std::nullopt;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer()) {
    int64_t v = it->get<int64_t>();
    return v < 0 ? std::nullopt : std::optional<uint64_t>(static_cast<uint64_t>(v));
  }
  if (it->is_number_float()) {
    double v = it->get<double>();
    return v < 0 ? std::nullopt : std::optional<uint64_t>(static_cast<uint64_t>(v));
  }
  if (it->is_string()) return to_number<uint64_t>(it->get_ref<const std::string&>());
  return std::nullopt;
}

std::string json_str(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

std::optional<VmPower> power_word(std::string_view w) {
  if (w == "running") return VmPower::running;
  if (w == "stopped") return VmPower::stopped;
  if (w == "paused" || w == "suspended") return VmPower::paused;
  return std::nullopt;
}

bool all_of(std::string_view s, auto pred) {
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return pred(static_cast<unsigned char>(c)); });
}

}  // namespace

Result<VmPower> parse_qm_status(std::string_view out) {
  std::string_view text = trim(out);
  if (text.empty()) return fail(ErrorCode::proxmox_error, "empty qm status output");
  std::optional<std::string_view> status, qmp;
  for (std::string_view line : split_lines(text)) {
    line = trim(line);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = trim(line.substr(0, colon));
    std::string_view value = trim(line.substr(colon + 1));
    if (key == "status" && !status) status = value;
    if (key == "qmpstatus" && !qmp) qmp = value;
  }
  if (!status) {
    auto words = split_ws(text);
    if (words.size() == 1) status = words[0];
  }
  if (!status)
    return fail(ErrorCode::proxmox_error, "no status in qm status output " + excerpt(text));
  auto power = power_word(*status);
  if (!power) return fail(ErrorCode::proxmox_error, "unknown status " + excerpt(*status));
  if (*power == VmPower::running && qmp &&
      (*qmp == "paused" || *qmp == "suspended" || *qmp == "prelaunch")) {
    return VmPower::paused;
  }
  return *power;
}

Result<std::vector<VmInfo>> parse_qm_list(std::string_view out) {
  std::vector<VmInfo> vms;
  auto lines = split_lines(out);
  size_t i = 0;
  while (i < lines.size() && trim(lines[i]).empty()) ++i;
  if (i == lines.size()) return vms;  // no VMs: qm list prints nothing at all
  auto header = split_ws(lines[i]);
  int c_vmid = -1, c_name = -1, c_status = -1, c_mem = -1, c_disk = -1, c_pid = -1;
  for (size_t c = 0; c < header.size(); ++c) {
    std::string_view h = header[c];
    int ci = static_cast<int>(c);
    if (h == "VMID")
      c_vmid = ci;
    else if (h == "NAME")
      c_name = ci;
    else if (h == "STATUS")
      c_status = ci;
    else if (h == "MEM(MB)")
      c_mem = ci;
    else if (h == "BOOTDISK(GB)")
      c_disk = ci;
    else if (h == "PID")
      c_pid = ci;
  }
  if (c_vmid != 0 || c_status < 0) {
    return fail(ErrorCode::proxmox_error, "qm list: unrecognised header " + excerpt(lines[i]));
  }
  const size_t ncols = header.size();
  for (++i; i < lines.size(); ++i) {
    std::string_view line = trim(lines[i]);
    if (line.empty()) continue;
    auto cells = split_ws(line);
    // An unnamed VM leaves the NAME column blank, shifting every later cell left by one.
    int shift = 0;
    if (cells.size() + 1 == ncols && c_name >= 0 && cells.size() > static_cast<size_t>(c_name) &&
        power_word(cells[c_name])) {
      shift = 1;
    } else if (cells.size() < ncols) {
      return fail(ErrorCode::proxmox_error, "qm list: truncated row " + excerpt(line));
    }
    auto cell = [&](int c) -> std::string_view {
      if (c < 0) return {};
      if (shift && c == c_name) return {};
      int idx = (shift && c > c_name) ? c - 1 : c;
      return cells[idx];
    };
    VmInfo vm;
    auto vmid = to_number<int>(cell(c_vmid));
    if (!vmid || *vmid <= 0)
      return fail(ErrorCode::proxmox_error, "qm list: bad VMID in " + excerpt(line));
    vm.vmid = *vmid;
    vm.name = std::string(cell(c_name));
    auto power = power_word(cell(c_status));
    if (!power) return fail(ErrorCode::proxmox_error, "qm list: bad status in " + excerpt(line));
    vm.status = *power;
    if (c_mem >= 0) {
      auto mem = to_number<uint64_t>(cell(c_mem));
      if (!mem) return fail(ErrorCode::proxmox_error, "qm list: bad memory in " + excerpt(line));
      vm.memory_mb = *mem;
    }
    if (c_disk >= 0) {
      auto disk = to_double(cell(c_disk));
      if (!disk)
        return fail(ErrorCode::proxmox_error, "qm list: bad disk size in " + excerpt(line));
      vm.bootdisk_gb = *disk;
    }
    if (c_pid >= 0) {
      auto pid = to_number<int>(cell(c_pid));
      if (!pid) return fail(ErrorCode::proxmox_error, "qm list: bad PID in " + excerpt(line));
      vm.pid = *pid;
    }
    vms.push_back(std::move(vm));
  }
  return vms;
}

Result<std::vector<VmResource>> parse_vm_resources_json(std::string_view body) {
  auto j = parse_json(trim(body));
  if (!j) return fail(ErrorCode::proxmox_error, "VM list is not JSON: " + excerpt(body));
  const json& list = unwrap_data(*j);
  if (!list.is_array()) return fail(ErrorCode::proxmox_error, "VM list is not an array");
  std::vector<VmResource> out;
  for (const json& e : list) {
    if (!e.is_object()) continue;
    auto vmid = json_u64(e, "vmid");
    if (!vmid || *vmid == 0 || *vmid > 999999999) continue;
    VmResource r;
    r.info.vmid = static_cast<int>(*vmid);
    r.info.name = json_str(e, "name");
    r.type = json_str(e, "type");
    r.node = json_str(e, "node");
    std::string status = json_str(e, "status");
    auto power = power_word(status);
    r.info.status = power.value_or(VmPower::stopped);
    if (status == "running" && json_str(e, "qmpstatus") == "paused")
      r.info.status = VmPower::paused;
    r.info.memory_mb = json_u64(e, "maxmem").value_or(0) >> 20;
    r.info.bootdisk_gb = static_cast<double>(json_u64(e, "maxdisk").value_or(0)) / (1u << 30);
    r.info.pid = static_cast<int>(json_u64(e, "pid").value_or(0));
    auto t = e.find("template");
    r.info.is_template =
        t != e.end() &&
        (t->is_boolean() ? t->get<bool>() : json_u64(e, "template").value_or(0) != 0);
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::map<std::string, std::string>> parse_qm_config(std::string_view out) {
  std::map<std::string, std::string> config;
  for (std::string_view line : split_lines(out)) {
    std::string_view t = trim(line);
    if (t.empty() || t.front() == '#') continue;
    if (t.front() == '[') break;  // snapshot sections follow the current config
    size_t sep = t.find(": ");
    if (sep == std::string_view::npos) {
      if (!t.empty() && t.back() == ':')
        sep = t.size() - 1;  // `key:` with empty value
      else
        continue;
    }
    std::string_view key = trim(t.substr(0, sep));
    if (key.empty()) continue;
    std::string_view value = sep + 1 < t.size() ? trim(t.substr(sep + 1)) : std::string_view{};
    config.emplace(std::string(key), std::string(value));
  }
  return config;
}

Result<std::string> parse_nodes_json(std::string_view out) {
  std::string_view text = trim(out);
  if (text.empty()) return fail(ErrorCode::proxmox_error, "empty node list");
  auto j = parse_json(text);
  if (!j) return fail(ErrorCode::proxmox_error, "node list is not JSON: " + excerpt(text));
  const json& list = unwrap_data(*j);
  if (!list.is_array()) return fail(ErrorCode::proxmox_error, "node list is not an array");
  std::string first;
  for (const json& entry : list) {
    if (!entry.is_object()) continue;
    std::string node = json_str(entry, "node");
    if (node.empty()) continue;
    if (json_str(entry, "status") == "online") return node;
    if (first.empty()) first = node;
  }
  if (first.empty()) return fail(ErrorCode::proxmox_error, "no nodes found");
  return first;
}

Result<std::vector<GuestInterface>> parse_agent_interfaces(std::string_view out) {
  std::string_view text = trim(out);
  if (text.empty()) return fail(ErrorCode::proxmox_error, "empty agent response");
  auto j = parse_json(text);
  if (!j) return fail(ErrorCode::proxmox_error, "agent response is not JSON: " + excerpt(text));
  const json* list = nullptr;
  const json* cur = &*j;
  // Peel {"data": ...} and {"result": ...} wrappers (REST wraps the agent's {"result": ...}).
  for (int depth = 0; depth < 3 && !list; ++depth) {
    if (cur->is_array()) {
      list = cur;
    } else if (cur->is_object()) {
      auto r = cur->find("result");
      auto d = cur->find("data");
      if (r != cur->end())
        cur = &*r;
      else if (d != cur->end())
        cur = &*d;
      else
        break;
    } else {
      break;
    }
  }
  if (!list) return fail(ErrorCode::proxmox_error, "unrecognized agent response");
  std::vector<GuestInterface> ifaces;
  for (const json& e : *list) {
    if (!e.is_object()) continue;
    GuestInterface iface;
    iface.name = json_str(e, "name");
    iface.mac = json_str(e, "hardware-address");
    auto addrs = e.find("ip-addresses");
    if (addrs != e.end() && addrs->is_array()) {
      for (const json& a : *addrs) {
        if (!a.is_object()) continue;
        GuestAddress addr;
        addr.address = json_str(a, "ip-address");
        addr.type = json_str(a, "ip-address-type");
        if (addr.address.empty()) continue;
        auto prefix = a.find("prefix");
        if (prefix != a.end() && prefix->is_number_integer()) addr.prefix = prefix->get<int>();
        iface.addresses.push_back(std::move(addr));
      }
    }
    ifaces.push_back(std::move(iface));
  }
  return ifaces;
}

std::optional<uint32_t> parse_ipv4(std::string_view text) {
  uint32_t out = 0;
  int parts = 0;
  while (parts < 4) {
    size_t dot = text.find('.');
    std::string_view part = text.substr(0, dot);
    if (part.empty() || part.size() > 3 || !all_of(part, ::isdigit)) return std::nullopt;
    auto v = to_number<unsigned>(part);
    if (!v || *v > 255) return std::nullopt;
    out = (out << 8) | *v;
    ++parts;
    if (dot == std::string_view::npos) break;
    if (parts == 4) return std::nullopt;  // a fifth part
    text.remove_prefix(dot + 1);
  }
  if (parts != 4) return std::nullopt;
  return out;
}

std::optional<Ipv4Cidr> parse_ipv4_cidr(std::string_view text) {
  text = trim(text);
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto addr = parse_ipv4(text.substr(0, slash));
  auto bits = to_number<int>(text.substr(slash + 1));
  if (!addr || !bits || *bits < 0 || *bits > 32) return std::nullopt;
  Ipv4Cidr c;
  c.mask = *bits == 0 ? 0 : (~uint32_t{0} << (32 - *bits));
  c.network = *addr & c.mask;
  return c;
}

Result<std::string> select_guest_ip(const std::vector<GuestInterface>& ifaces,
                                    std::string_view agent_cidr) {
  std::optional<Ipv4Cidr> cidr;
  if (!trim(agent_cidr).empty()) {
    cidr = parse_ipv4_cidr(agent_cidr);
    if (!cidr) {
      return fail(ErrorCode::invalid_argument,
                  "invalid agent CIDR " + excerpt(agent_cidr) + " (want an IPv4 a.b.c.d/n)");
    }
  }
  std::optional<std::string> first;
  for (const GuestInterface& iface : ifaces) {
    if (iface.name == "lo") continue;
    for (const GuestAddress& a : iface.addresses) {
      if (a.type != "ipv4") continue;
      auto ip = parse_ipv4(a.address);
      if (!ip) continue;
      if ((*ip >> 24) == 127 || (*ip >> 16) == 0xA9FE || *ip == 0) continue;
      if (cidr) {
        if (cidr->contains(*ip)) return a.address;
      } else if (!first) {
        first = a.address;
      }
    }
  }
  if (first) return *first;
  return fail(ErrorCode::not_found,
              cidr ? "guest IP not found: no IPv4 address inside " + std::string(trim(agent_cidr))
                   : std::string("guest IP not found"));
}

Result<std::string> parse_pvesm_alloc(std::string_view out) {
  std::string_view text = trim(out);
  if (text.empty()) return fail(ErrorCode::proxmox_error, "empty volume id");
  for (std::string_view line : split_lines(text)) {
    line = trim(line);
    constexpr std::string_view kPrefix = "successfully created '";
    if (line.starts_with(kPrefix) && line.ends_with("'")) {
      line = line.substr(kPrefix.size(), line.size() - kPrefix.size() - 1);
    }
    size_t colon = line.find(':');
    if (colon != std::string_view::npos && colon > 0 && colon + 1 < line.size() &&
        valid_storage_id(line.substr(0, colon)) &&
        line.find_first_of(" \t'\"") == std::string_view::npos) {
      return std::string(line);
    }
  }
  return fail(ErrorCode::proxmox_error, "pvesm alloc: no volume id in " + excerpt(text));
}

Result<std::vector<StorageStatus>> parse_pvesm_status(std::string_view out) {
  std::vector<StorageStatus> result;
  auto lines = split_lines(out);
  size_t i = 0;
  while (i < lines.size() && trim(lines[i]).empty()) ++i;
  if (i == lines.size()) return fail(ErrorCode::proxmox_error, "empty pvesm status output");
  auto header = split_ws(lines[i]);
  int c_name = -1, c_type = -1, c_status = -1, c_total = -1, c_used = -1, c_avail = -1;
  for (size_t c = 0; c < header.size(); ++c) {
    int ci = static_cast<int>(c);
    if (header[c] == "Name")
      c_name = ci;
    else if (header[c] == "Type")
      c_type = ci;
    else if (header[c] == "Status")
      c_status = ci;
    else if (header[c] == "Total")
      c_total = ci;
    else if (header[c] == "Used")
      c_used = ci;
    else if (header[c] == "Available")
      c_avail = ci;
  }
  if (c_name < 0 || c_total < 0 || c_avail < 0) {
    return fail(ErrorCode::proxmox_error, "pvesm status: unrecognised header " + excerpt(lines[i]));
  }
  int need = std::max({c_name, c_type, c_status, c_total, c_used, c_avail}) + 1;
  for (++i; i < lines.size(); ++i) {
    std::string_view line = trim(lines[i]);
    if (line.empty()) continue;
    auto cells = split_ws(line);
    if (static_cast<int>(cells.size()) < need) {
      return fail(ErrorCode::proxmox_error, "pvesm status: truncated row " + excerpt(line));
    }
    StorageStatus s;
    s.name = std::string(cells[c_name]);
    if (c_type >= 0) s.type = std::string(cells[c_type]);
    s.active = c_status < 0 || cells[c_status] == "active";
    auto kib = [&](int c) -> std::optional<uint64_t> {
      if (c < 0) return uint64_t{0};
      auto v = to_number<uint64_t>(cells[c]);
      if (!v || *v > (UINT64_MAX >> 10)) return std::nullopt;
      return *v * 1024;
    };
    auto total = kib(c_total), used = kib(c_used), avail = kib(c_avail);
    if (!total || !used || !avail) {
      return fail(ErrorCode::proxmox_error, "pvesm status: bad size in " + excerpt(line));
    }
    s.total_bytes = *total;
    s.used_bytes = *used;
    s.avail_bytes = *avail;
    result.push_back(std::move(s));
  }
  return result;
}

Result<std::vector<StorageStatus>> parse_storage_json(std::string_view body) {
  auto j = parse_json(trim(body));
  if (!j) return fail(ErrorCode::proxmox_error, "storage list is not JSON: " + excerpt(body));
  const json& list = unwrap_data(*j);
  if (!list.is_array()) return fail(ErrorCode::proxmox_error, "storage list is not an array");
  std::vector<StorageStatus> result;
  for (const json& e : list) {
    if (!e.is_object()) continue;
    StorageStatus s;
    s.name = json_str(e, "storage");
    if (s.name.empty()) continue;
    s.type = json_str(e, "type");
    auto active = e.find("active");
    s.active = active == e.end() || (active->is_boolean() ? active->get<bool>()
                                                          : json_u64(e, "active").value_or(0) != 0);
    s.total_bytes = json_u64(e, "total").value_or(0);
    s.used_bytes = json_u64(e, "used").value_or(0);
    s.avail_bytes = json_u64(e, "avail").value_or(0);
    result.push_back(std::move(s));
  }
  return result;
}

Result<engine::HostCapacity> parse_node_status_json(std::string_view out) {
  auto j = parse_json(trim(out));
  if (!j) return fail(ErrorCode::proxmox_error, "node status is not JSON: " + excerpt(out));
  const json& d = unwrap_data(*j);
  if (!d.is_object()) return fail(ErrorCode::proxmox_error, "node status is not an object");
  auto cpu = d.find("cpuinfo");
  auto mem = d.find("memory");
  if (cpu == d.end() || !cpu->is_object() || mem == d.end() || !mem->is_object()) {
    return fail(ErrorCode::proxmox_error, "node status lacks cpuinfo or memory");
  }
  engine::HostCapacity cap;
  uint64_t cores = json_u64(*cpu, "cores").value_or(0);
  uint64_t sockets = json_u64(*cpu, "sockets").value_or(1);
  // Proxmox's cpuinfo.cores is per socket; cpus is the logical CPU count.
  cap.cores = static_cast<int>(cores * std::max<uint64_t>(sockets, 1));
  cap.threads = static_cast<int>(json_u64(*cpu, "cpus").value_or(0));
  cap.memory_total_mb = json_u64(*mem, "total").value_or(0) >> 20;
  cap.memory_used_mb = json_u64(*mem, "used").value_or(0) >> 20;
  if (cap.threads <= 0 || cap.memory_total_mb == 0) {
    return fail(ErrorCode::proxmox_error, "node status lacks cpus or memory.total");
  }
  return cap;
}

bool is_missing_vm_text(std::string_view text) {
  std::string t = lower(text);
  for (std::string_view needle : {"does not exist", "no such vm", "no such qemu", "no such vmid",
                                  "vmid does not exist", "no vmid found"}) {
    if (t.find(needle) != std::string::npos) return true;
  }
  return t.find("not found") != std::string::npos && t.find("vm") != std::string::npos;
}

bool is_conflict_text(std::string_view text) {
  std::string t = lower(text);
  return t.find("already exists") != std::string::npos ||
         t.find("is locked") != std::string::npos || t.find("can't lock file") != std::string::npos;
}

Result<Upid> parse_upid(std::string_view text) {
  std::string_view t = trim(text);
  if (!t.starts_with("UPID:")) return fail(ErrorCode::proxmox_error, "not a UPID: " + excerpt(t));
  std::vector<std::string_view> f;
  std::string_view rest = t.substr(5);
  while (true) {
    size_t c = rest.find(':');
    if (c == std::string_view::npos) {
      f.push_back(rest);
      break;
    }
    f.push_back(rest.substr(0, c));
    rest.remove_prefix(c + 1);
  }
  // node, pid, pstart, starttime, type, id, user, and the empty field after the final colon.
  if (f.size() < 7 || f[0].empty() || f[4].empty()) {
    return fail(ErrorCode::proxmox_error, "malformed UPID " + excerpt(t));
  }
  auto pid = to_number<uint32_t>(f[1], 16);
  auto pstart = to_number<uint64_t>(f[2], 16);
  auto start = to_number<uint64_t>(f[3], 16);
  if (!pid || !pstart || !start)
    return fail(ErrorCode::proxmox_error, "malformed UPID " + excerpt(t));
  Upid u;
  u.text = std::string(t);
  u.node = std::string(f[0]);
  u.pid = *pid;
  u.pstart = *pstart;
  u.starttime = *start;
  u.type = std::string(f[4]);
  u.id = std::string(f[5]);
  // The user (token ids contain '!') never holds ':'; anything after it is ignored.
  u.user = std::string(f[6]);
  return u;
}

Result<TaskStatus> parse_task_status(std::string_view body) {
  auto j = parse_json(trim(body));
  if (!j) return fail(ErrorCode::proxmox_error, "task status is not JSON: " + excerpt(body));
  const json& d = unwrap_data(*j);
  if (!d.is_object()) return fail(ErrorCode::proxmox_error, "task status is not an object");
  std::string status = json_str(d, "status");
  TaskStatus ts;
  if (status == "running") return ts;
  if (status != "stopped") return fail(ErrorCode::proxmox_error, "task status " + excerpt(status));
  ts.stopped = true;
  ts.exitstatus = json_str(d, "exitstatus");
  if (ts.exitstatus.empty()) ts.exitstatus = "unknown (no exitstatus)";
  return ts;
}

Result<std::string> rest_data_json(std::string_view body) {
  auto j = parse_json(trim(body));
  if (!j || !j->is_object() || !j->contains("data")) {
    return fail(ErrorCode::proxmox_error, "response is not {\"data\":...}: " + excerpt(body));
  }
  return (*j)["data"].dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::string> rest_data_string(std::string_view body) {
  auto j = parse_json(trim(body));
  if (!j || !j->is_object())
    return fail(ErrorCode::proxmox_error, "response is not JSON: " + excerpt(body));
  auto d = j->find("data");
  if (d == j->end() || !d->is_string()) {
    return fail(ErrorCode::proxmox_error, "response data is not a string: " + excerpt(body));
  }
  return d->get<std::string>();
}

std::string rest_error_message(long http_status, std::string_view reason, std::string_view body) {
  std::string msg;
  if (auto j = parse_json(trim(body)); j && j->is_object()) {
    auto errs = j->find("errors");
    if (errs != j->end() && errs->is_object() && !errs->empty()) {
      for (auto it = errs->begin(); it != errs->end(); ++it) {  // nlohmann objects are key-sorted
        if (!msg.empty()) msg += ", ";
        msg += it.key() + ": ";
        msg += it->is_string() ? it->get<std::string>()
                               : it->dump(-1, ' ', false, json::error_handler_t::replace);
      }
    }
    if (msg.empty()) msg = json_str(*j, "message");
  }
  std::string_view r = trim(reason);
  if (msg.empty() && !r.empty()) msg = std::string(r);
  if (msg.empty()) msg = std::string(trim(body));
  if (!r.empty() && msg.find(r) == std::string::npos && msg != r) msg = std::string(r) + ": " + msg;
  // Proxmox texts are ASCII; anything else (or a huge HTML page) is escaped and bounded.
  std::string_view m(msg);
  bool clean = m.size() <= 500 && all_of(m, [](unsigned char c) { return c >= 0x20 && c < 0x7f; });
  return "API error (status " + std::to_string(http_status) + "): " + (clean ? msg : excerpt(msg));
}

std::string build_net0(std::string_view model, std::string_view bridge,
                       std::optional<bool> firewall) {
  std::string out = trim(model).empty() ? std::string("virtio") : std::string(trim(model));
  if (!trim(bridge).empty() && out.find("bridge=") == std::string::npos) {
    out += ",bridge=";
    out += trim(bridge);
  }
  if (firewall && out.find("firewall=") == std::string::npos) {
    out += *firewall ? ",firewall=1" : ",firewall=0";
  }
  return out;
}

bool is_shrink_refusal(const Error& error) {
  return error.message.find("shrinking disks is not supported") != std::string::npos;
}

std::string build_cicustom(std::string_view value) {
  std::string_view v = trim(value);
  if (v.find('=') != std::string_view::npos) return std::string(v);
  return "user=" + std::string(v);
}

std::optional<bool> agent_enabled(std::string_view value) {
  std::string_view v = trim(value);
  auto boolean = [](std::string_view b) -> std::optional<bool> {
    if (b == "1" || b == "yes" || b == "on" || b == "true") return true;
    if (b == "0" || b == "no" || b == "off" || b == "false") return false;
    return std::nullopt;
  };
  // Property string: `[enabled=]<bool>[,key=value...]`.
  size_t start = 0;
  bool first = true;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    std::string_view field =
        trim(v.substr(start, comma == std::string_view::npos ? v.npos : comma - start));
    size_t eq = field.find('=');
    if (eq == std::string_view::npos) {
      if (first) return boolean(field);
    } else if (field.substr(0, eq) == "enabled") {
      return boolean(field.substr(eq + 1));
    }
    first = false;
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return std::nullopt;
}

Result<void> check_template_agent(int vmid, const std::map<std::string, std::string>& config) {
  std::string id = std::to_string(vmid);
  auto it = config.find("agent");
  if (it == config.end()) {
    return fail(
        ErrorCode::invalid_argument,
        "template VM " + id + " does not have qemu-guest-agent enabled (missing 'agent:' config)");
  }
  auto enabled = agent_enabled(it->second);
  if (!enabled) {
    return fail(ErrorCode::invalid_argument,
                "template VM " + id + " has an unreadable agent setting " + excerpt(it->second));
  }
  if (!*enabled) {
    return fail(ErrorCode::invalid_argument,
                "template VM " + id + " has qemu-guest-agent explicitly disabled");
  }
  return {};
}

bool valid_vm_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    std::string_view label =
        name.substr(start, dot == std::string_view::npos ? name.npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
      return false;
    if (!all_of(label, [](unsigned char c) { return std::isalnum(c) || c == '-'; })) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool valid_volume_name(std::string_view name) {
  return !name.empty() && name.size() <= 200 && name != "." && name != ".." &&
         all_of(name, [](unsigned char c) {
           return std::isalnum(c) || c == '.' || c == '_' || c == '-';
         });
}

bool valid_snapshot_name(std::string_view name) {
  return !name.empty() && name.size() <= 40 && std::isalpha(static_cast<unsigned char>(name[0])) &&
         all_of(name, [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '-'; });
}

bool valid_storage_id(std::string_view name) {
  return !name.empty() && name.size() <= 100 && std::islower(static_cast<unsigned char>(name[0])) &&
         all_of(name, [](unsigned char c) {
           return std::islower(c) || std::isdigit(c) || c == '.' || c == '_' || c == '-';
         });
}

bool valid_disk_slot(std::string_view slot) {
  for (auto [prefix, max] :
       {std::pair<std::string_view, int>{"scsi", 30}, {"virtio", 15}, {"sata", 5}, {"ide", 3}}) {
    if (slot.starts_with(prefix)) {
      std::string_view n = slot.substr(prefix.size());
      if (n.size() > 1 && n[0] == '0') return false;
      auto v = to_number<int>(n);
      return v && *v >= 0 && *v <= max;
    }
  }
  return false;
}

bool valid_cpuset(std::string_view text) {
  if (text.empty()) return false;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    std::string_view part =
        text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
    size_t dash = part.find('-');
    auto lo = to_number<unsigned>(part.substr(0, dash));
    if (!lo) return false;
    if (dash != std::string_view::npos) {
      auto hi = to_number<unsigned>(part.substr(dash + 1));
      if (!hi || *hi < *lo) return false;
    }
    if (comma == std::string_view::npos) return true;
    start = comma + 1;
  }
}

bool valid_vmid(int vmid) {
  return vmid >= 100 && vmid <= 999999999;
}

std::string clone_spec_problem(const engine::CloneSpec& spec) {
  if (!valid_vmid(spec.template_vmid) || !valid_vmid(spec.vmid))
    return "clone: VMIDs must be within 100..999999999";
  if (!spec.name.empty() && !valid_vm_name(spec.name))
    return "clone: invalid VM name (want a DNS name)";
  if (!spec.storage.empty() && !valid_storage_id(spec.storage)) return "clone: invalid storage id";
  return {};
}

std::string config_spec_problem(int vmid, const engine::VmConfigSpec& spec) {
  if (!valid_vmid(vmid)) return "configure: invalid VMID";
  if (!spec.name.empty() && !valid_vm_name(spec.name))
    return "configure: invalid VM name (want a DNS name)";
  if (!spec.affinity.empty() && !valid_cpuset(spec.affinity))
    return "configure: invalid affinity (want e.g. 0-3,8)";
  if (spec.cores < 0 || spec.memory_mb < 0 || spec.root_disk_gb < 0)
    return "configure: negative size";
  return {};
}

std::string volume_spec_problem(const engine::VolumeSpec& spec) {
  if (!valid_storage_id(spec.storage)) return "volume: invalid storage id";
  if (!valid_volume_name(spec.name)) return "volume: invalid name";
  if (spec.size_gb <= 0) return "size_gb must be positive";
  if (spec.vmid != 0 && !valid_vmid(spec.vmid)) return "volume: invalid owner VMID";
  return {};
}

}  // namespace agentlab::proxmox
