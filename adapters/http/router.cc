#include "adapters/http/router.h"

#include <cstdio>
#include <cstdlib>

#include "adapters/http/json.h"
#include "adapters/http/url.h"

namespace agentlab::http {

namespace {

[[noreturn]] void bad_route(std::string_view method, std::string_view pattern, const char* why) {
  std::fprintf(stderr, "http router: route %.*s %.*s: %s\n", static_cast<int>(method.size()),
               method.data(), static_cast<int>(pattern.size()), pattern.data(), why);
  std::abort();
}

// "/a/b/" → ["a","b"]; "/" → []. Keeps empty segments from "//".
std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  if (!path.empty() && path[0] == '/') path.remove_prefix(1);
  if (path.empty()) return out;
  while (true) {
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

}  // namespace

void Router::add(std::string_view method, std::string_view pattern, Handler handler,
                 RouteOptions options) {
  if (method.empty()) bad_route(method, pattern, "empty method");
  if (pattern.empty() || pattern[0] != '/') bad_route(method, pattern, "pattern must start with /");
  if (!handler) bad_route(method, pattern, "empty handler");
  std::vector<Segment> segments;
  auto parts =
      split_path(pattern.size() > 1 && pattern.back() == '/' ? pattern.substr(0, pattern.size() - 1)
                                                             : pattern);
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string_view p = parts[i];
    if (p.empty()) bad_route(method, pattern, "empty segment");
    if (p.front() == '{') {
      if (p.back() != '}' || p.size() < 3) bad_route(method, pattern, "malformed parameter");
      std::string_view name = p.substr(1, p.size() - 2);
      if (name.size() > 3 && name.substr(name.size() - 3) == "...") {
        if (i + 1 != parts.size()) bad_route(method, pattern, "{rest...} must be last");
        segments.push_back({Segment::Kind::rest, std::string(name.substr(0, name.size() - 3))});
      } else {
        segments.push_back({Segment::Kind::param, std::string(name)});
      }
    } else {
      segments.push_back({Segment::Kind::literal, std::string(p)});
    }
  }
  Pattern* target = nullptr;
  for (auto& existing : patterns_) {
    if (existing.text == pattern) target = &existing;
  }
  if (target == nullptr) {
    patterns_.push_back(Pattern{std::string(pattern), std::move(segments), {}});
    target = &patterns_.back();
  }
  for (const auto& r : target->routes) {
    if (r.method == method) bad_route(method, pattern, "registered twice");
  }
  target->routes.push_back(
      Route{std::string(method), std::move(handler), options, std::string(pattern)});
}

Router::Match Router::match(std::string_view method, std::string_view raw_path) const {
  Match result;
  if (raw_path.size() > 1 && raw_path.back() == '/') raw_path.remove_suffix(1);
  auto raw = split_path(raw_path);
  std::vector<std::string> segs;
  segs.reserve(raw.size());
  for (auto r : raw) {
    auto d = percent_decode(r, false);
    if (!d) return result;
    segs.push_back(std::move(*d));
  }

  const Pattern* best = nullptr;
  std::vector<int> best_rank;
  std::vector<std::pair<std::string, std::string>> best_params;
  std::vector<int> rank;
  std::vector<std::pair<std::string, std::string>> params;
  for (const auto& pat : patterns_) {
    rank.clear();
    params.clear();
    bool ok = true;
    size_t i = 0;
    for (; i < pat.segments.size() && ok; ++i) {
      const Segment& s = pat.segments[i];
      if (s.kind == Segment::Kind::rest) {
        if (i >= segs.size()) {
          ok = false;
          break;
        }
        std::string joined;
        for (size_t j = i; j < segs.size(); ++j) {
          if (j > i) joined += '/';
          joined += segs[j];
        }
        params.emplace_back(s.text, std::move(joined));
        rank.push_back(2);
        i = segs.size();
        break;
      }
      if (i >= segs.size()) {
        ok = false;
        break;
      }
      if (s.kind == Segment::Kind::literal) {
        ok = segs[i] == s.text;
        rank.push_back(0);
      } else {
        ok = !segs[i].empty();
        if (ok) params.emplace_back(s.text, segs[i]);
        rank.push_back(1);
      }
    }
    if (!ok) continue;
    bool ends_with_rest = !pat.segments.empty() && pat.segments.back().kind == Segment::Kind::rest;
    if (!ends_with_rest && i != segs.size()) continue;
    if (best == nullptr || rank < best_rank) {
      best = &pat;
      best_rank = rank;
      best_params = params;
    }
  }
  if (best == nullptr) return result;

  const Route* any = nullptr;
  for (const auto& r : best->routes) {
    if (r.method == method) {
      result.kind = Match::Kind::found;
      result.route = &r;
      result.params = std::move(best_params);
      return result;
    }
    if (r.method == "*") any = &r;
  }
  if (any != nullptr) {
    result.kind = Match::Kind::found;
    result.route = any;
    result.params = std::move(best_params);
    return result;
  }
  result.kind = Match::Kind::method_not_allowed;
  for (const auto& r : best->routes) {
    if (!result.allow.empty()) result.allow += ", ";
    result.allow += r.method;
  }
  return result;
}

void add_health_routes(Router& router) {
  auto ok = [](Request&, ResponseWriter w) { w.send(200, "ok", kTextContentType); };
  router.any("/healthz", ok);
  router.any("/health", ok);
}

}  // namespace agentlab::http
