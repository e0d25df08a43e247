// Pure parsers and value builders for what Proxmox prints and answers.
//
// Everything here is a function of its input only (no I/O, no clock), so it is tested directly
// on the spec's sample outputs (spec/proxmox-config-guest.md §2.5, §3.3) and on hostile output:
// truncated JSON, extra or missing columns, non-UTF-8 bytes, empty text. A parser never throws;
// output it cannot make sense of is ErrorCode::proxmox_error naming what was wrong, because it
// means Proxmox (or the simulator) said something we do not understand.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/hypervisor.h"
#include "events/error.h"

namespace agentlab::proxmox {

// `qm status <vmid> [--verbose]`: the `status:` line (running | stopped), overridden to paused
// when a `qmpstatus:` line says paused/suspended/prelaunch. A bare word (`running`) is also
// accepted. Keys are case-sensitive, as Proxmox prints them.
Result<engine::VmPower> parse_qm_status(std::string_view out);

// `qm list`: a header line naming the columns (VMID NAME STATUS MEM(MB) BOOTDISK(GB) PID), then
// one row per VM. Columns are found by header name, so extra columns are ignored; a row with a
// missing name (Proxmox prints blanks for unnamed VMs) is accepted; a row that does not parse is
// an error (never silently dropped: a missing VM here could look like a destroyed one). is_template
// is always false: `qm list` does not say.
Result<std::vector<engine::VmInfo>> parse_qm_list(std::string_view out);

// `GET /cluster/resources?type=vm` or `GET /nodes/{node}/qemu` (bare array or `{"data":[...]}`).
// Memory and disk come in bytes; `template` may be 0/1 or a boolean. Entries without a vmid are
// skipped; `type` and `node` are empty when the source does not give them.
struct VmResource {
  engine::VmInfo info;
  std::string type;  // qemu | lxc
  std::string node;
};
Result<std::vector<VmResource>> parse_vm_resources_json(std::string_view body);

// Whether a failed disk resize failed only because the disk is already larger than asked
// (Proxmox answers "shrinking disks is not supported" and changes nothing). A profile's
// root_disk_gb is a minimum: a template with a bigger disk satisfies it.
bool is_shrink_refusal(const Error& error);

// `qm config <vmid>`: `key: value` lines, stopping at the first snapshot section (`[name]`).
// Lines without `: ` are ignored.
Result<std::map<std::string, std::string>> parse_qm_config(std::string_view out);

// `pvesh get /nodes --output-format json` (bare array) or the REST body `{"data":[...]}`.
// Prefers the first node whose status is "online", else the first with a non-empty `node`.
Result<std::string> parse_nodes_json(std::string_view out);

// The guest agent's network-get-interfaces, in any of its shapes: `{"result":[...]}` (pvesh),
// `{"data":{"result":[...]}}` (REST), `{"data":[...]}`, or a bare array. Interfaces and addresses
// missing required fields are skipped. An empty list is not an error here.
Result<std::vector<engine::GuestInterface>> parse_agent_interfaces(std::string_view out);

// Picks the guest's IPv4 address: only `ipv4` addresses that are not loopback, link-local,
// 0.0.0.0 or on an interface named `lo`; with a CIDR, the first candidate inside it (none inside ->
// not_found), otherwise the first candidate. An unparsable CIDR is invalid_argument.
Result<std::string> select_guest_ip(const std::vector<engine::GuestInterface>& ifaces,
                                    std::string_view agent_cidr);

// An IPv4 CIDR such as 10.77.0.0/16 (host bits are allowed and masked off).
struct Ipv4Cidr {
  uint32_t network = 0;
  uint32_t mask = 0;
  bool contains(uint32_t addr) const { return (addr & mask) == network; }
};
std::optional<Ipv4Cidr> parse_ipv4_cidr(std::string_view text);
std::optional<uint32_t> parse_ipv4(std::string_view text);

// `pvesm alloc` prints `successfully created '<volid>'`; older versions and the simulator may
// print the bare volid. Returns the volid (storage:name), or an error for anything else.
Result<std::string> parse_pvesm_alloc(std::string_view out);

struct StorageStatus {
  std::string name;
  std::string type;
  bool active = false;
  uint64_t total_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t avail_bytes = 0;
};

// `pvesm status`: header `Name Type Status Total Used Available %`, sizes in KiB.
Result<std::vector<StorageStatus>> parse_pvesm_status(std::string_view out);

// REST `GET /nodes/{node}/storage` body (sizes in bytes).
Result<std::vector<StorageStatus>> parse_storage_json(std::string_view body);

// `pvesh get /nodes/{node}/status` JSON (or the REST body with `data`): cpuinfo and memory.
Result<engine::HostCapacity> parse_node_status_json(std::string_view out);

// True when Proxmox's error text says the VM does not exist (spec §2.3, plus the REST
// `no vmid found`). Case-insensitive.
bool is_missing_vm_text(std::string_view text);
// True when Proxmox's error text says the VM already exists or is locked.
bool is_conflict_text(std::string_view text);

// UPID:<node>:<pid hex>:<pstart hex>:<starttime hex>:<type>:<id>:<user>:
struct Upid {
  std::string text;  // the whole id, as given
  std::string node;
  uint32_t pid = 0;
  uint64_t pstart = 0;
  uint64_t starttime = 0;
  std::string type;
  std::string id;
  std::string user;
};
Result<Upid> parse_upid(std::string_view text);

struct TaskStatus {
  bool stopped = false;
  std::string exitstatus;  // "OK" on success; Proxmox's error text otherwise (only when stopped)
};
// The `data` of `GET /nodes/{node}/tasks/{upid}/status` (a `{"data":{...}}` wrapper is accepted).
Result<TaskStatus> parse_task_status(std::string_view body);

// The `data` member of a REST body `{"data": ...}`; error when the body is not such JSON.
// The returned text is the JSON of `data` (a string comes back quoted).
Result<std::string> rest_data_json(std::string_view body);
// The `data` member when it is a JSON string (a UPID, a volid); error otherwise.
Result<std::string> rest_data_string(std::string_view body);

// The person-readable message of a failed REST call: the `errors` object's entries as
// `key: value` (sorted by key), else `message`, else the HTTP reason phrase, else the body.
std::string rest_error_message(long http_status, std::string_view reason, std::string_view body);

// net0: model (default virtio; may already carry `=MAC` or `bridge=`) plus `,bridge=` when the
// model text has none, plus `,firewall=0|1` when set and the text has none.
std::string build_net0(std::string_view model, std::string_view bridge,
                       std::optional<bool> firewall);
// cicustom: verbatim when it contains `=`, else `user=` prefixed.
std::string build_cicustom(std::string_view value);

// Template checks on a VM config: exists (the caller maps not_found), has `agent` and it is
// enabled. `agent` is a property string whose first field or `enabled=` key is the boolean
// (fixes the reference's substring checks, which let `enabled=0` through).
Result<void> check_template_agent(int vmid, const std::map<std::string, std::string>& config);
// Whether an `agent` property value enables the agent; nullopt when it cannot be read.
std::optional<bool> agent_enabled(std::string_view value);

// Name checks done before anything reaches qm (spec decision 10).
bool valid_vm_name(std::string_view name);        // DNS name: labels of [A-Za-z0-9-], dots
bool valid_volume_name(std::string_view name);    // [A-Za-z0-9._-]+
bool valid_snapshot_name(std::string_view name);  // pve-configid: [A-Za-z][A-Za-z0-9_-]{0,39}
bool valid_storage_id(std::string_view name);     // pve-storage-id: [a-z][a-z0-9._-]*
bool valid_disk_slot(std::string_view slot);      // scsiN, virtioN, sataN, ideN
bool valid_cpuset(std::string_view text);         // pve-cpuset: 0,5,8-11
bool valid_vmid(int vmid);                        // 100..999999999

// The checks every backend makes before a spec reaches Proxmox: "" when the spec is fine, else
// the ErrorCode::invalid_argument message.
std::string clone_spec_problem(const engine::CloneSpec& spec);
std::string config_spec_problem(int vmid, const engine::VmConfigSpec& spec);
std::string volume_spec_problem(const engine::VolumeSpec& spec);

}  // namespace agentlab::proxmox
