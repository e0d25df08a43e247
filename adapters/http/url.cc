#include "adapters/http/url.h"

namespace agentlab::http {

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::optional<std::string> percent_decode(std::string_view in, bool plus_as_space) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return std::nullopt;
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_as_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> parse_query(std::string_view raw) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!raw.empty()) {
    size_t amp = raw.find('&');
    std::string_view part = raw.substr(0, amp);
    raw = amp == std::string_view::npos ? std::string_view{} : raw.substr(amp + 1);
    // Go rejects ';' separators since 1.17; such pairs are dropped.
    if (part.empty() || part.find(';') != std::string_view::npos) continue;
    size_t eq = part.find('=');
    std::string_view k = part.substr(0, eq);
    std::string_view v = eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
    auto dk = percent_decode(k, true);
    auto dv = percent_decode(v, true);
    if (!dk || !dv) continue;
    out.emplace_back(std::move(*dk), std::move(*dv));
  }
  return out;
}

std::optional<HostPort> split_host_port(std::string_view address, std::string* error) {
  auto fail_with = [&](std::string_view why) -> std::optional<HostPort> {
    if (error) *error = "address " + std::string(address) + ": " + std::string(why);
    return std::nullopt;
  };
  size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return fail_with("missing port in address");
  HostPort hp;
  if (!address.empty() && address[0] == '[') {
    size_t close = address.find(']');
    if (close == std::string_view::npos) return fail_with("missing ']' in address");
    if (close + 1 == address.size()) return fail_with("missing port in address");
    if (close + 1 != colon) {
      return fail_with(address[close + 1] == ':' ? "too many colons in address"
                                                 : "missing port in address");
    }
    hp.host = std::string(address.substr(1, close - 1));
    if (hp.host.find('[') != std::string::npos || hp.host.find(']') != std::string::npos) {
      return fail_with("unexpected '[' in address");
    }
  } else {
    hp.host = std::string(address.substr(0, colon));
    if (hp.host.find(':') != std::string::npos) return fail_with("too many colons in address");
    if (hp.host.find('[') != std::string::npos || hp.host.find(']') != std::string::npos) {
      return fail_with("unexpected '[' or ']' in address");
    }
  }
  hp.port = std::string(address.substr(colon + 1));
  if (hp.port.find('[') != std::string::npos || hp.port.find(']') != std::string::npos) {
    return fail_with("unexpected ']' in address");
  }
  return hp;
}

}  // namespace agentlab::http
