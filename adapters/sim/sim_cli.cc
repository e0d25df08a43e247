// GCC 12 reports -Wmaybe-uninitialized inside libstdc++'s <regex>/<functional>/<expected> when
// building with -fsanitize (false positives); keep them from failing -Werror builds.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "adapters/sim/sim_cli.h"

#include <cstdio>
#include <set>
#include <sstream>

namespace agentlab::sim {

using nlohmann::json;

namespace {

struct ParsedArgs {
  std::vector<std::string> positionals;
  Params options;
  std::string error;  // "400 ..." text when the line does not parse
};

bool is_boolean_option(const CliCommand& c, const std::string& name) {
  for (const auto& o : c.options)
    if (o.name == name) return o.typetext.rfind("<boolean>", 0) == 0;
  return false;
}

const CliOption* find_option(const CliCommand& c, const std::string& name) {
  for (const auto& o : c.options) {
    if (o.name == name) return &o;
    auto br = o.name.find("[n]");
    if (br != std::string::npos && name.size() > br && name.compare(0, br, o.name, 0, br) == 0 &&
        name.find_first_not_of("0123456789", br) == std::string::npos)
      return &o;
  }
  return nullptr;
}

// Splits argv after the subcommand into positionals and --options, as PVE's CLI handler does.
// format_options: pvesh's [FORMAT_OPTIONS], accepted in addition to the synopsis options.
ParsedArgs parse_args(const CliCommand& c, const std::vector<std::string>& args, size_t from,
                      const std::set<std::string>& format_options, bool pass_unknown) {
  ParsedArgs p;
  ParamErrors errs;
  for (size_t i = from; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() > 2 && a.rfind("--", 0) == 0) {
      std::string name = a.substr(2), value;
      bool has_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      bool known = find_option(c, name) || format_options.contains(name);
      if (!has_value) {
        bool flag = is_boolean_option(c, name) || name == "noborder" || name == "noheader" ||
                    name == "quiet" || name == "human-readable";
        if (flag && (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0)) {
          value = "1";
        } else if (i + 1 < args.size()) {
          value = args[++i];
        } else {
          p.error = "400 unable to parse option\n" + name + ": option requires an argument";
          return p;
        }
      }
      if (!known && !pass_unknown) {
        errs[name] =
            "property is not defined in schema and the schema does not allow additional "
            "properties";
        continue;
      }
      if (const CliOption* o = find_option(c, name)) {
        std::string e = check_typetext(o->typetext, value);
        if (!e.empty()) errs[name] = e;
      }
      p.options[name] = value;
    } else {
      p.positionals.push_back(a);
    }
  }
  if (!errs.empty()) {
    p.error = "400 Parameter verification failed.";
    for (const auto& [k, v] : errs) p.error += "\n" + k + ": " + v;
    return p;
  }
  size_t need = c.positionals.size(), most = need + c.optional_positionals.size();
  if (p.positionals.size() < need) p.error = "400 not enough arguments";
  if (p.positionals.size() > most && c.name != "guest exec") p.error = "400 too many arguments";
  return p;
}

CliOutput hang_out() {
  CliOutput o;
  o.hang = true;
  return o;
}

CliOutput fail_out(const std::string& msg, int code = 255) {
  CliOutput o;
  o.exit_code = code;
  o.err = msg;
  if (!o.err.empty() && o.err.back() != '\n') o.err += "\n";
  return o;
}

CliOutput api_fail(const ApiResponse& r) {
  std::string text = r.error_text();
  return fail_out(text, text.find("does not exist") != std::string::npos &&
                                text.find("Configuration file") != std::string::npos
                            ? 2
                            : 255);
}

std::string value_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "";
  return v.dump();
}

std::string pad_right(const std::string& s, size_t w) {
  return s.size() >= w ? s : s + std::string(w - s.size(), ' ');
}

}  // namespace

Result<std::unique_ptr<SimCli>> SimCli::create(SimCore& core, std::string schema_dir) {
  if (schema_dir.empty()) schema_dir = core.config().schema_dir;
  std::unique_ptr<SimCli> cli(new SimCli(core));
  for (const char* prog : {"qm", "pvesh", "pvesm"}) {
    auto s = CliSchema::load(schema_dir, prog);
    if (!s) return std::unexpected(s.error());
    cli->schemas_.push_back(std::move(*s));
  }
  return cli;
}

CliOutput SimCli::malform(CliOutput o) {
  if (!core_.take_malformed()) return o;
  // Truncated output with invalid UTF-8, as a dying process or a broken pipe would leave.
  o.out = o.out.substr(0, o.out.size() / 2) + "\xff\xfe{\"trunc";
  return o;
}

CliOutput SimCli::run(const std::string& program, const std::vector<std::string>& args) {
  if (program == "pve-sim") {
    if (args.size() == 2 && args[0] == "fault") {
      json f = json::parse(args[1], nullptr, false);
      if (f.is_discarded()) return fail_out("pve-sim: fault: not JSON");
      auto r = core_.inject_fault(f);
      if (!r) return fail_out("pve-sim: fault: " + r.error().message);
      return {};
    }
    return fail_out("usage: pve-sim fault '<json>'");
  }
  CliOutput o;
  if (program == "qm")
    o = run_qm(args);
  else if (program == "pvesh")
    o = run_pvesh(args);
  else if (program == "pvesm")
    o = run_pvesm(args);
  else
    return fail_out(program + ": not a simulated program");
  if (!o.wait_upid.empty() || o.hang) return o;
  return malform(std::move(o));
}

CliOutput SimCli::finish(const CliOutput& pending) {
  auto t = core_.task(pending.wait_upid);
  CliOutput o = pending;
  o.wait_upid.clear();
  if (!t) return fail_out("task vanished");
  if (t->exitstatus != "OK") {
    o.exit_code = t->exitstatus.find("does not exist") != std::string::npos ? 2 : 255;
    o.err += t->exitstatus + "\n";
  }
  return malform(std::move(o));
}

CliOutput SimCli::run_qm(const std::vector<std::string>& args) {
  const CliSchema& schema = schemas_[0];
  size_t used = 0;
  const CliCommand* c = schema.find(args, &used);
  if (!c)
    return fail_out("ERROR: unknown command 'qm" + (args.empty() ? "" : " " + args[0]) +
                    "'\nUSAGE: qm <COMMAND> [ARGS] [OPTIONS]");
  ParsedArgs p = parse_args(*c, args, used, {}, false);
  if (!p.error.empty()) return fail_out(p.error + "\n" + c->usage);
  if (core_.take_hang(c->name)) return hang_out();
  const std::string node = "/nodes/" + core_.config().node;
  const std::string& name = c->name;
  std::string vm = p.positionals.empty() ? "" : node + "/qemu/" + p.positionals[0];

  // Calls the API with the positionals and the options the API method knows; CLI-only options
  // (already checked against the synopsis) are dropped.
  auto call = [&](const std::string& method, const std::string& path, Params extra) {
    auto m = core_.schema().match(method, path);
    if (m) {
      const json& props = m->method->at("parameters").value("properties", json::object());
      for (const auto& [k, v] : p.options)
        if (ApiSchema::find_property(props, k)) extra[k] = v;
    }
    return core_.api(method, path, extra);
  };
  auto task = [&](const ApiResponse& r) {
    if (!r.ok()) return api_fail(r);
    CliOutput o;
    o.wait_upid = r.data().get<std::string>();
    return o;
  };

  if (name == "list") {
    auto r = core_.api("GET", node + "/qemu", {});
    if (!r.ok()) return api_fail(r);
    std::vector<json> rows(r.data().begin(), r.data().end());
    std::sort(rows.begin(), rows.end(),
              [](const json& a, const json& b) { return a["vmid"] < b["vmid"]; });
    CliOutput o;
    char line[256];
    std::snprintf(line, sizeof line, "%10s %-20s %-10s %-10s %12s %s\n", "VMID", "NAME", "STATUS",
                  "MEM(MB)", "BOOTDISK(GB)", "PID");
    o.out += line;
    for (const auto& v : rows) {
      std::snprintf(line, sizeof line, "%10d %-20s %-10s %-10llu %12.2f %-10d\n",
                    v["vmid"].get<int>(), v["name"].get<std::string>().c_str(),
                    v["status"].get<std::string>().c_str(),
                    static_cast<unsigned long long>(v["maxmem"].get<uint64_t>() >> 20),
                    double(v["maxdisk"].get<uint64_t>()) / double(1ULL << 30), v.value("pid", 0));
      std::string l = line;
      while (l.size() > 1 && l[l.size() - 2] == ' ') l.erase(l.size() - 2, 1);
      o.out += l;
    }
    return o;
  }
  if (name == "config") {
    auto r = call("GET", vm + "/config", {});
    if (!r.ok()) return api_fail(r);
    CliOutput o;
    for (auto it = r.data().begin(); it != r.data().end(); ++it)
      if (it.key() != "digest") o.out += it.key() + ": " + value_text(it.value()) + "\n";
    return o;
  }
  if (name == "status") {
    auto r = call("GET", vm + "/status/current", {});
    if (!r.ok()) return api_fail(r);
    CliOutput o;
    if (p.options.contains("verbose") && p.options["verbose"] != "0") {
      for (auto it = r.data().begin(); it != r.data().end(); ++it)
        o.out += it.key() + ": " + value_text(it.value()) + "\n";
    } else {
      o.out = "status: " + r.data()["status"].get<std::string>() + "\n";
    }
    return o;
  }
  if (name == "set") {
    auto r = call("PUT", vm + "/config", {});
    if (!r.ok()) return api_fail(r);
    return {};
  }
  if (name == "clone") return task(call("POST", vm + "/clone", {{"newid", p.positionals[1]}}));
  if (name == "start" || name == "stop" || name == "shutdown" || name == "suspend" ||
      name == "resume")
    return task(call("POST", vm + "/status/" + name, {}));
  if (name == "destroy") return task(call("DELETE", vm, {}));
  if (name == "template") return task(call("POST", vm + "/template", {}));
  if (name == "snapshot")
    return task(call("POST", vm + "/snapshot", {{"snapname", p.positionals[1]}}));
  if (name == "rollback")
    return task(call("POST", vm + "/snapshot/" + p.positionals[1] + "/rollback", {}));
  if (name == "delsnapshot") return task(call("DELETE", vm + "/snapshot/" + p.positionals[1], {}));
  if (name == "disk resize" || name == "resize")
    return task(
        call("PUT", vm + "/resize", {{"disk", p.positionals[1]}, {"size", p.positionals[2]}}));
  if (name == "listsnapshot") {
    auto r = call("GET", vm + "/snapshot", {});
    if (!r.ok()) return api_fail(r);
    CliOutput o;
    for (const auto& s : r.data())
      o.out += "`-> " + s["name"].get<std::string>() + "  " + value_text(s["description"]) + "\n";
    return o;
  }
  if (name == "guest cmd") {
    if (p.positionals[1] != "network-get-interfaces")
      return fail_out("pve-sim: qm guest cmd " + p.positionals[1] + " is not simulated");
    auto r = call("GET", vm + "/agent/network-get-interfaces", {});
    if (!r.ok()) return api_fail(r);
    CliOutput o;
    o.out = r.data()["result"].dump(3) + "\n";
    return o;
  }
  return fail_out("pve-sim: 'qm " + name + "' is valid but not simulated");
}

CliOutput SimCli::run_pvesh(const std::vector<std::string>& args) {
  const CliSchema& schema = schemas_[1];
  size_t used = 0;
  const CliCommand* c = schema.find(args, &used);
  if (!c)
    return fail_out("ERROR: unknown command 'pvesh" + (args.empty() ? "" : " " + args[0]) +
                    "'\nUSAGE: pvesh <COMMAND> [ARGS] [OPTIONS]");
  static const std::set<std::string> kFormat = {"output-format", "noborder", "noheader", "quiet",
                                                "human-readable"};
  // API parameters are free-form --options here; the API schema validates them below.
  ParsedArgs p = parse_args(*c, args, used, kFormat, true);
  if (!p.error.empty()) return fail_out(p.error + "\n" + c->usage);
  std::string fmt = p.options.contains("output-format") ? p.options["output-format"] : "text";
  if (fmt != "text" && fmt != "json" && fmt != "json-pretty" && fmt != "yaml")
    return fail_out("400 Parameter verification failed.\noutput-format: value '" + fmt +
                    "' does not have a value in the enumeration 'text, json, json-pretty, yaml'\n" +
                    c->usage);
  Params params;
  for (const auto& [k, v] : p.options)
    if (!kFormat.contains(k) && k != "noproxy") params[k] = v;
  if (core_.take_hang("pvesh " + c->name)) return hang_out();
  std::string method = c->name == "get" || c->name == "ls" ? "GET"
                       : c->name == "set"                  ? "PUT"
                       : c->name == "create"               ? "POST"
                       : c->name == "delete"               ? "DELETE"
                                                           : "";
  if (method.empty()) return fail_out("pve-sim: 'pvesh " + c->name + "' is not simulated");
  ApiResponse r = core_.api(method, p.positionals[0], params);
  if (!r.ok())
    return fail_out(r.status == 400 ? r.error_text()
                                    : std::to_string(r.status) + " " + r.error_text());
  CliOutput o;
  const json& d = r.data();
  if (fmt == "json")
    o.out = d.dump() + "\n";
  else if (fmt == "json-pretty")
    o.out = d.dump(4) + "\n";
  else if (d.is_string())
    o.out = d.get<std::string>() + "\n";
  else if (d.is_object()) {
    for (auto it = d.begin(); it != d.end(); ++it)
      o.out += pad_right(it.key(), 12) + " " + value_text(it.value()) + "\n";
  } else if (!d.is_null()) {
    o.out = d.dump(1) + "\n";
  }
  return o;
}

CliOutput SimCli::run_pvesm(const std::vector<std::string>& args) {
  const CliSchema& schema = schemas_[2];
  size_t used = 0;
  const CliCommand* c = schema.find(args, &used);
  if (!c)
    return fail_out("ERROR: unknown command 'pvesm" + (args.empty() ? "" : " " + args[0]) +
                    "'\nUSAGE: pvesm <COMMAND> [ARGS] [OPTIONS]");
  ParsedArgs p = parse_args(*c, args, used, {}, false);
  if (!p.error.empty()) return fail_out(p.error + "\n" + c->usage);
  if (core_.take_hang("pvesm " + c->name)) return hang_out();
  const std::string node = "/nodes/" + core_.config().node;
  if (c->name == "alloc") {
    Params params = {
        {"vmid", p.positionals[1]}, {"filename", p.positionals[2]}, {"size", p.positionals[3]}};
    if (p.options.contains("format")) params["format"] = p.options["format"];
    auto r = core_.api("POST", node + "/storage/" + p.positionals[0] + "/content", params);
    if (!r.ok()) return api_fail(r);
    CliOutput o;
    o.out = "successfully created '" + r.data().get<std::string>() + "'\n";
    return o;
  }
  if (c->name == "free") {
    std::string vol = p.positionals[0];
    std::string storage =
        p.options.contains("storage") ? p.options["storage"] : vol.substr(0, vol.find(':'));
    auto r = core_.api("DELETE", node + "/storage/" + storage + "/content/" + vol, {});
    if (!r.ok()) return api_fail(r);
    return {};
  }
  if (c->name == "list") {
    auto r = core_.api("GET", node + "/storage/" + p.positionals[0] + "/content", {});
    if (!r.ok()) return api_fail(r);
    CliOutput o;
    char line[512];
    std::snprintf(line, sizeof line, "%-40s %-6s %-8s %12s %s\n", "Volid", "Format", "Type", "Size",
                  "VMID");
    o.out += line;
    for (const auto& v : r.data()) {
      std::snprintf(line, sizeof line, "%-40s %-6s %-8s %12llu %d\n",
                    v["volid"].get<std::string>().c_str(), "raw", "images",
                    static_cast<unsigned long long>(v["size"].get<uint64_t>()),
                    v["vmid"].get<int>());
      o.out += line;
    }
    return o;
  }
  if (c->name == "status") {
    auto r = core_.api("GET", node + "/storage", {});
    if (!r.ok()) return api_fail(r);
    CliOutput o;
    char line[512];
    std::snprintf(line, sizeof line, "%-16s %-8s %-8s %14s %14s %14s %8s\n", "Name", "Type",
                  "Status", "Total", "Used", "Available", "%");
    o.out += line;
    for (const auto& s : r.data()) {
      uint64_t total = s["total"].get<uint64_t>() >> 10, used = s["used"].get<uint64_t>() >> 10,
               avail = s["avail"].get<uint64_t>() >> 10;
      std::snprintf(line, sizeof line, "%-16s %-8s %-8s %14llu %14llu %14llu %7.2f%%\n",
                    s["storage"].get<std::string>().c_str(), s["type"].get<std::string>().c_str(),
                    "active", static_cast<unsigned long long>(total),
                    static_cast<unsigned long long>(used), static_cast<unsigned long long>(avail),
                    total ? 100.0 * double(used) / double(total) : 0.0);
      o.out += line;
    }
    return o;
  }
  return fail_out("pve-sim: 'pvesm " + c->name + "' is valid but not simulated");
}

}  // namespace agentlab::sim
