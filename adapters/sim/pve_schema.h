// The real Proxmox VE API and CLI descriptions, loaded from ../shared/proxmox/, used by the
// simulator to reject every call that real Proxmox would reject.
//
// ApiSchema reads pve-api-schema.json (the API viewer's tree) and validates a REST call: the path
// must match a schema path template ({node}, {vmid}, ... segments capture parameters), the method
// must exist there, and every parameter must be defined, well typed (integer / number / boolean /
// string), inside enum / pattern / minimum / maximum / length bounds, and every non-optional one
// present. Property-string values (net0, scsi0, agent, ...) have their keys checked too.
//
// CliSchema reads the qm / pvesm / pvesh synopsis .adoc files: subcommands, positional arguments
// and `--option` names with their type text. Option values of qm subcommands that front an API
// method are validated with the API schema (qm set <-> PUT .../config, qm clone <-> POST
// .../clone, ...); the rest by the synopsis type text.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "events/error.h"

namespace agentlab::sim {

// Form parameters of one call, as strings (what HTTP form encoding or argv delivers).
using Params = std::map<std::string, std::string>;

// param name -> Proxmox's message for it. Empty when the call is valid.
using ParamErrors = std::map<std::string, std::string>;

struct ApiMatch {
  std::string path_template;     // e.g. /nodes/{node}/qemu/{vmid}/config
  Params path_params;            // e.g. node=pve, vmid=100
  const nlohmann::json* method;  // the schema's info[METHOD] object
};

// Where the shared Proxmox reference files are: $AGENTLAB_PVE_SCHEMA if set, else the path the
// build configured (<source root>/../shared/proxmox).
std::string default_schema_dir();

class ApiSchema {
 public:
  // Loads <dir>/pve-api-schema.json.
  static Result<std::shared_ptr<const ApiSchema>> load(const std::string& dir);

  // Finds the schema entry for METHOD PATH (path relative to /api2/json). Errors:
  // not_found (no such path: Proxmox answers 501 "Method 'GET /x' not implemented"),
  // invalid_argument (path exists, method does not: also 501 in Proxmox).
  Result<ApiMatch> match(std::string_view method, std::string_view path) const;

  // Validates params (path params are merged in) against the matched method.
  ParamErrors validate(const ApiMatch& m, const Params& params) const;

  // The parameter schema of a method, for CLI option validation.
  const nlohmann::json* find_method(std::string_view method, std::string_view path_template) const;

  // Validates one value against one property schema; empty string when valid.
  static std::string check_value(const nlohmann::json& prop, const std::string& value);

  // Finds the property schema for name (handles `net[n]`-style families); nullptr if undefined.
  static const nlohmann::json* find_property(const nlohmann::json& properties,
                                             const std::string& name);

 private:
  struct Entry {
    std::vector<std::string> segments;
    std::string path;
    std::vector<std::string> methods;  // GET, POST, ... this path has
    // The info object (method -> definition) as deflated CBOR: arena_[offset, offset + size),
    // raw_size bytes once inflated.
    size_t offset = 0, size = 0, raw_size = 0;
    bool has(std::string_view method) const;
  };
  // The entry's info object, parsed on first use and kept (stable address); nullptr only if the
  // packed bytes were unreadable.
  const nlohmann::json* unpacked(const Entry& e) const;

  std::string arena_;
  std::vector<Entry> entries_;  // never modified after load: Entry addresses are cache keys
  mutable std::mutex unpacked_mu_;
  mutable std::map<const Entry*, std::unique_ptr<const nlohmann::json>> unpacked_;
};

struct CliOption {
  std::string name;      // without the leading --, e.g. "net[n]"
  std::string typetext;  // e.g. "<boolean>", "<integer> (1 - N)", "<a | b>"
};

struct CliCommand {
  std::string name;                      // e.g. "set", "disk resize", "guest cmd"
  std::vector<std::string> positionals;  // e.g. {"vmid", "newid"}; optional ones in []
  std::vector<std::string> optional_positionals;
  std::vector<CliOption> options;
  bool takes_options = false;  // synopsis shows [OPTIONS]
  std::string usage;           // e.g. "qm set <vmid> [OPTIONS]"
};

class CliSchema {
 public:
  // Parses e.g. <dir>/qm.1-synopsis.adoc for program "qm".
  static Result<CliSchema> load(const std::string& dir, const std::string& program);

  // Longest subcommand matching the leading words of args; nullptr when none. *consumed is set to
  // the number of args the name took.
  const CliCommand* find(const std::vector<std::string>& args, size_t* consumed) const;
  const std::string& program() const { return program_; }

 private:
  std::string program_;
  std::vector<CliCommand> commands_;
};

// Checks a value against synopsis type text (boolean, integer ranges, enums); empty when valid.
std::string check_typetext(const std::string& typetext, const std::string& value);

}  // namespace agentlab::sim
