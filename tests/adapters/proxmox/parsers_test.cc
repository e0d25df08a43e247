#include "adapters/proxmox/parsers.h"

#include <doctest/doctest.h>

using namespace agentlab;
using namespace agentlab::proxmox;
using engine::VmPower;

// Sample outputs from spec/proxmox-config-guest.md §2.5 and §3.3.
namespace {
constexpr std::string_view kQmConfig = R"(agent: enabled=1
boot: order=scsi0
cicustom: user=local:snippets/agentlab-1000-9f86d081884c7d65.yaml
cores: 4
ide2: local-zfs:vm-1000-cloudinit,media=cdrom
ipconfig0: ip=dhcp
memory: 6144
meta: creation-qemu=8.1.5,ctime=1738159200
name: sandbox-1000
net0: virtio=BC:24:11:D5:49:57,bridge=vmbr1
ostype: l26
scsi0: local-zfs:base-9000-disk-0/vm-1000-disk-0,size=40G
scsihw: virtio-scsi-pci
serial0: socket
vga: serial0
)";

constexpr std::string_view kNodes =
    R"([{"id":"node/pve","node":"pve","status":"online","type":"node","cpu":0.03,"maxcpu":16,"mem":8589934592,"maxmem":68719476736,"uptime":86400}])";

constexpr std::string_view kAgent = R"({"result":[
 {"name":"lo","hardware-address":"00:00:00:00:00:00","ip-addresses":[
   {"ip-address":"127.0.0.1","ip-address-type":"ipv4","prefix":8},
   {"ip-address":"::1","ip-address-type":"ipv6","prefix":128}]},
 {"name":"eth0","hardware-address":"bc:24:11:d5:49:57","ip-addresses":[
   {"ip-address":"10.77.0.23","ip-address-type":"ipv4","prefix":16},
   {"ip-address":"fe80::be24:11ff:fed5:4957","ip-address-type":"ipv6","prefix":64}]}]})";

constexpr std::string_view kQmList =
    "      VMID NAME                 STATUS     MEM(MB)    BOOTDISK(GB) PID\n"
    "      1000 sandbox-1000         running    6144              40.00 41235\n"
    "      9000 agentlab-ubuntu-2404 stopped    4096              40.00 0\n";
}  // namespace

TEST_CASE("qm status") {
  CHECK(parse_qm_status("status: running\n").value() == VmPower::running);
  CHECK(parse_qm_status("running").value() == VmPower::running);
  CHECK(parse_qm_status("status:running").value() == VmPower::running);
  CHECK(parse_qm_status("name: x\nstatus: stopped").value() == VmPower::stopped);
  CHECK(parse_qm_status("status: paused").value() == VmPower::paused);
  // --verbose output: qmpstatus refines a running VM that is really paused.
  CHECK(parse_qm_status("cpus: 4\nqmpstatus: paused\nstatus: running\n").value() ==
        VmPower::paused);
  CHECK(parse_qm_status("qmpstatus: running\nstatus: running\n").value() == VmPower::running);

  auto blank = parse_qm_status("  \n");
  REQUIRE(!blank);
  CHECK(blank.error().code == ErrorCode::proxmox_error);
  CHECK(blank.error().message.find("empty") != std::string::npos);
  CHECK(!parse_qm_status("Status: running"));  // case-sensitive, as Proxmox prints it
  auto unknown = parse_qm_status("status: exploded");
  REQUIRE(!unknown);
  CHECK(unknown.error().message.find("exploded") != std::string::npos);
  CHECK(!parse_qm_status("status: \xff\xfe"));
  CHECK(!parse_qm_status("garbage with words"));
}

TEST_CASE("qm list") {
  auto vms = parse_qm_list(kQmList);
  REQUIRE(vms);
  REQUIRE(vms->size() == 2);
  CHECK((*vms)[0].vmid == 1000);
  CHECK((*vms)[0].name == "sandbox-1000");
  CHECK((*vms)[0].status == VmPower::running);
  CHECK((*vms)[0].memory_mb == 6144);
  CHECK((*vms)[0].bootdisk_gb == doctest::Approx(40.0));
  CHECK((*vms)[0].pid == 41235);
  CHECK((*vms)[1].vmid == 9000);
  CHECK((*vms)[1].status == VmPower::stopped);
  CHECK((*vms)[1].pid == 0);

  SUBCASE("empty output is an empty host") {
    auto none = parse_qm_list("");
    REQUIRE(none);
    CHECK(none->empty());
    CHECK(parse_qm_list("      VMID NAME STATUS MEM(MB) BOOTDISK(GB) PID\n")->empty());
  }
  SUBCASE("extra columns are ignored") {
    auto extra = parse_qm_list(
        "VMID NAME STATUS MEM(MB) BOOTDISK(GB) PID LOCK\n"
        "101 a running 512 8.00 77 backup\n");
    REQUIRE(extra);
    CHECK((*extra)[0].pid == 77);
  }
  SUBCASE("columns are found by header name") {
    auto moved = parse_qm_list("VMID STATUS NAME PID\n101 stopped box 0\n");
    REQUIRE(moved);
    CHECK((*moved)[0].name == "box");
    CHECK((*moved)[0].memory_mb == 0);
  }
  SUBCASE("an unnamed VM leaves a blank NAME cell") {
    auto blank = parse_qm_list(
        "VMID NAME STATUS MEM(MB) BOOTDISK(GB) PID\n"
        "101           stopped 512 8.00 0\n");
    REQUIRE(blank);
    CHECK((*blank)[0].name.empty());
    CHECK((*blank)[0].memory_mb == 512);
  }
  SUBCASE("hostile output is an error, never a shorter list") {
    CHECK(!parse_qm_list("VMID NAME STATUS MEM(MB) BOOTDISK(GB) PID\n101 a running 512\n"));
    CHECK(!parse_qm_list("VMID NAME STATUS MEM(MB) BOOTDISK(GB) PID\nabc a running 512 8 0\n"));
    CHECK(!parse_qm_list("VMID NAME STATUS MEM(MB) BOOTDISK(GB) PID\n101 a \xff 512 8 0\n"));
    CHECK(!parse_qm_list("VMID NAME STATUS MEM(MB) BOOTDISK(GB) PID\n101 a running x 8 0\n"));
    CHECK(!parse_qm_list("Usage: qm list\n"));
    CHECK(!parse_qm_list("{\"data\":[]}"));
  }
}

TEST_CASE("qm config") {
  auto cfg = parse_qm_config(kQmConfig);
  REQUIRE(cfg);
  CHECK(cfg->at("agent") == "enabled=1");
  CHECK(cfg->at("net0") == "virtio=BC:24:11:D5:49:57,bridge=vmbr1");
  CHECK(cfg->at("scsi0") == "local-zfs:base-9000-disk-0/vm-1000-disk-0,size=40G");
  CHECK(cfg->size() == 15);
  auto snap = parse_qm_config("cores: 2\n\n[snap1]\ncores: 8\nparent: x\n");
  REQUIRE(snap);
  CHECK(snap->at("cores") == "2");
  CHECK(!snap->contains("parent"));
  auto junk = parse_qm_config("no separator here\n\xff\xfe\ndescription: a: b\n");
  REQUIRE(junk);
  CHECK(junk->size() == 1);
  CHECK(junk->at("description") == "a: b");
  CHECK(parse_qm_config("")->empty());
}

TEST_CASE("template agent check") {
  auto ok = [](std::string_view agent) {
    return check_template_agent(9000, {{"agent", std::string(agent)}}).has_value();
  };
  CHECK(ok("1"));
  CHECK(ok("enabled=1"));
  CHECK(ok("1,fstrim_cloned_disks=0"));
  CHECK(ok("enabled=1,fstrim_cloned_disks=0"));
  CHECK(ok("fstrim_cloned_disks=1,enabled=1"));
  CHECK(!ok("0"));
  CHECK(!ok("enabled=0"));  // the reference let this through
  CHECK(!ok("disabled=1"));
  CHECK(!ok(""));
  auto missing = check_template_agent(9000, {{"cores", "2"}});
  REQUIRE(!missing);
  CHECK(missing.error().message.find("missing 'agent:' config") != std::string::npos);
  auto disabled = check_template_agent(9000, {{"agent", "0"}});
  CHECK(disabled.error().message == "template VM 9000 has qemu-guest-agent explicitly disabled");
}

TEST_CASE("node list") {
  CHECK(parse_nodes_json(kNodes).value() == "pve");
  CHECK(parse_nodes_json(R"({"data":[{"node":"pve","status":"online"}]})").value() == "pve");
  CHECK(parse_nodes_json(R"([{"node":"a","status":"offline"},{"node":"b","status":"online"}])")
            .value() == "b");
  CHECK(parse_nodes_json(R"([{"node":"a","status":"offline"}])").value() == "a");
  CHECK(parse_nodes_json(R"([{"node":""},{"node":"x"}])").value() == "x");
  CHECK(parse_nodes_json("").error().message == "empty node list");
  CHECK(parse_nodes_json("[]").error().message == "no nodes found");
  CHECK(!parse_nodes_json(R"([{"node":"pve")"));           // truncated
  CHECK(!parse_nodes_json("[{\"node\":\"p\xff\"}]"));      // not UTF-8
  CHECK(!parse_nodes_json(R"({"data":{"node":"pve"}})"));  // not a list
}

TEST_CASE("agent interfaces: every shape") {
  auto pvesh = parse_agent_interfaces(kAgent);
  REQUIRE(pvesh);
  REQUIRE(pvesh->size() == 2);
  CHECK((*pvesh)[1].name == "eth0");
  CHECK((*pvesh)[1].mac == "bc:24:11:d5:49:57");
  REQUIRE((*pvesh)[1].addresses.size() == 2);
  CHECK((*pvesh)[1].addresses[0].address == "10.77.0.23");
  CHECK((*pvesh)[1].addresses[0].prefix == 16);

  auto rest = parse_agent_interfaces(
      R"({"data":{"result":[{"name":"eth0","ip-addresses":[{"ip-address":"10.77.0.23","ip-address-type":"ipv4","prefix":16}]}]}})");
  REQUIRE(rest);
  CHECK(select_guest_ip(*rest, "").value() == "10.77.0.23");
  auto data = parse_agent_interfaces(
      R"({"data":[{"name":"eth0","ip-addresses":[{"ip-address":"10.1.1.1","ip-address-type":"ipv4"}]}]})");
  REQUIRE(data);
  CHECK(select_guest_ip(*data, "").value() == "10.1.1.1");
  auto bare = parse_agent_interfaces("[]");
  REQUIRE(bare);
  CHECK(bare->empty());
  CHECK(select_guest_ip(*bare, "").error().code == ErrorCode::not_found);

  CHECK(parse_agent_interfaces("").error().message == "empty agent response");
  CHECK(!parse_agent_interfaces("{}"));
  CHECK(!parse_agent_interfaces(R"({"result":[{"name":"eth0")"));  // truncated
  CHECK(!parse_agent_interfaces("QEMU guest agent is not running"));
  CHECK(!parse_agent_interfaces("{\"result\":[{\"name\":\"\xc3\x28\"}]}"));  // bad UTF-8
  // Wrong-typed members are skipped, not fatal.
  auto odd = parse_agent_interfaces(
      R"({"result":[1,"x",{"name":"eth0","ip-addresses":[null,{"ip-address-type":"ipv4"},{"ip-address":"10.77.0.4","ip-address-type":"ipv4","prefix":"x"}]}]})");
  REQUIRE(odd);
  REQUIRE(odd->size() == 1);
  REQUIRE((*odd)[0].addresses.size() == 1);
  CHECK((*odd)[0].addresses[0].prefix == 0);
}

TEST_CASE("guest IP selection") {
  auto ifaces = parse_agent_interfaces(kAgent).value();
  CHECK(select_guest_ip(ifaces, "10.77.0.0/16").value() == "10.77.0.23");
  CHECK(select_guest_ip(ifaces, "").value() == "10.77.0.23");
  CHECK(select_guest_ip(ifaces, "192.168.0.0/24").error().code == ErrorCode::not_found);
  CHECK(select_guest_ip(ifaces, "not-a-cidr").error().code == ErrorCode::invalid_argument);
  CHECK(select_guest_ip(ifaces, "10.77.0.0").error().code == ErrorCode::invalid_argument);
  CHECK(select_guest_ip(ifaces, "10.77.0.5/16").value() == "10.77.0.23");  // host bits masked

  // CIDR preference within one interface (spec §11.8).
  std::vector<engine::GuestInterface> two = {
      {"eth0", "", {{"192.168.1.10", "ipv4", 24}, {"10.77.0.9", "ipv4", 16}}}};
  CHECK(select_guest_ip(two, "10.77.0.0/16").value() == "10.77.0.9");
  CHECK(select_guest_ip(two, "").value() == "192.168.1.10");

  // Filters (spec §11.9).
  std::vector<engine::GuestInterface> junk = {{"eth0",
                                               "",
                                               {{"10.0.0.1", "IPv4", 8},
                                                {"169.254.1.1", "ipv4", 16},
                                                {"0.0.0.0", "ipv4", 0},
                                                {"fd00::1", "ipv6", 64},
                                                {"127.0.0.5", "ipv4", 8},
                                                {"10.0.0.256", "ipv4", 8},
                                                {"10.0.0", "ipv4", 8}}}};
  CHECK(select_guest_ip(junk, "").error().code == ErrorCode::not_found);
  junk[0].addresses.push_back({"10.0.0.7", "ipv4", 8});
  CHECK(select_guest_ip(junk, "").value() == "10.0.0.7");
}

TEST_CASE("ipv4 and cidr parsing") {
  CHECK(parse_ipv4("10.77.0.1").value() == 0x0A4D0001u);
  CHECK(!parse_ipv4("10.77.0"));
  CHECK(!parse_ipv4("10.77.0.1.5"));
  CHECK(!parse_ipv4("1.2.3.-4"));
  CHECK(!parse_ipv4("01234.1.1.1"));
  CHECK(!parse_ipv4(""));
  auto c = parse_ipv4_cidr("10.77.0.0/16").value();
  CHECK(c.contains(*parse_ipv4("10.77.200.1")));
  CHECK(!c.contains(*parse_ipv4("10.78.0.1")));
  CHECK(parse_ipv4_cidr("0.0.0.0/0")->contains(12345));
  CHECK(!parse_ipv4_cidr("10.0.0.0/33"));
  CHECK(!parse_ipv4_cidr("fd00::/64"));
}

TEST_CASE("pvesm alloc output") {
  CHECK(parse_pvesm_alloc("successfully created 'local-zfs:vm-101-disk-1'\n").value() ==
        "local-zfs:vm-101-disk-1");
  CHECK(parse_pvesm_alloc("local-zfs:vm-0-disk-1\n").value() == "local-zfs:vm-0-disk-1");
  CHECK(parse_pvesm_alloc("  \n").error().message == "empty volume id");
  CHECK(!parse_pvesm_alloc("successfully created 'local-zfs:vm-101-disk-1"));  // truncated
  CHECK(!parse_pvesm_alloc("something happened"));
  CHECK(!parse_pvesm_alloc("successfully created ''"));
  CHECK(!parse_pvesm_alloc("\xff\xfe:\x01"));
}

TEST_CASE("pvesm status") {
  constexpr std::string_view out =
      "Name             Type     Status           Total            Used       Available        %\n"
      "local             dir     active        98497780        12345678        81085652   12.53%\n"
      "local-zfs     zfspool     active      1885863936       104857600      1781006336    5.56%\n"
      "nfs-backup        nfs   inactive               0               0               0    0.00%\n";
  auto st = parse_pvesm_status(out);
  REQUIRE(st);
  REQUIRE(st->size() == 3);
  CHECK((*st)[1].name == "local-zfs");
  CHECK((*st)[1].type == "zfspool");
  CHECK((*st)[1].active);
  CHECK((*st)[1].total_bytes == 1885863936ull * 1024);
  CHECK((*st)[1].avail_bytes == 1781006336ull * 1024);
  CHECK(!(*st)[2].active);
  CHECK(!parse_pvesm_status(""));
  CHECK(!parse_pvesm_status("Name Type Status Total Used Available %\nlocal dir active 1 2\n"));
  CHECK(
      !parse_pvesm_status("Name Type Status Total Used Available %\nlocal dir active x 2 3 1%\n"));
  CHECK(!parse_pvesm_status(
      "Name Type Status Total Used Available %\nl d a 99999999999999999999 0 0 0%\n"));
}

TEST_CASE("storage and node status JSON") {
  auto st = parse_storage_json(
      R"({"data":[{"storage":"local-zfs","type":"zfspool","active":1,"total":1000,"used":400,"avail":600},{"type":"x"}]})");
  REQUIRE(st);
  REQUIRE(st->size() == 1);
  CHECK(st->at(0).avail_bytes == 600);
  CHECK(st->at(0).active);
  CHECK(!parse_storage_json(R"({"data":[{"storage":"a")"));

  auto cap = parse_node_status_json(
      R"({"cpuinfo":{"cores":8,"cpus":16,"sockets":1},"memory":{"total":68719476736,"used":8589934592}})");
  REQUIRE(cap);
  CHECK(cap->cores == 8);
  CHECK(cap->threads == 16);
  CHECK(cap->memory_total_mb == 65536);
  CHECK(cap->memory_used_mb == 8192);
  CHECK(parse_node_status_json(
            R"({"data":{"cpuinfo":{"cores":4,"cpus":16,"sockets":2},"memory":{"total":1048576}}})")
            ->cores == 8);
  CHECK(!parse_node_status_json(R"({"cpuinfo":{}})"));
  CHECK(!parse_node_status_json("not json"));
}

TEST_CASE("missing-VM and conflict text") {
  CHECK(is_missing_vm_text("Configuration file 'nodes/pve/qemu-server/1.conf' does not exist"));
  CHECK(!is_missing_vm_text("VM 1 not running"));
  CHECK(!is_missing_vm_text("file not found"));
  CHECK(is_missing_vm_text("Not Found vm"));
  CHECK(is_missing_vm_text("no such VM ('405')"));
  CHECK(is_missing_vm_text("API error (status 500): vmid: VM 405 does not exist"));
  CHECK(!is_missing_vm_text(""));
  CHECK(is_conflict_text("unable to create VM 101: config file already exists"));
  CHECK(is_conflict_text("VM is locked (clone)"));
  CHECK(!is_conflict_text("VM 1 not running"));
}

TEST_CASE("UPID") {
  auto u = parse_upid("UPID:pve:000A1B2C:0123ABCD:65B8C0A1:qmclone:9000:root@pam!agentlab:");
  REQUIRE(u);
  CHECK(u->node == "pve");
  CHECK(u->pid == 0x000A1B2Cu);
  CHECK(u->pstart == 0x0123ABCDu);
  CHECK(u->starttime == 0x65B8C0A1u);
  CHECK(u->type == "qmclone");
  CHECK(u->id == "9000");
  CHECK(u->user == "root@pam!agentlab");
  CHECK(u->text == "UPID:pve:000A1B2C:0123ABCD:65B8C0A1:qmclone:9000:root@pam!agentlab:");
  CHECK(!parse_upid(""));
  CHECK(!parse_upid("UPID:pve:000A1B2C:0123ABCD"));  // truncated
  CHECK(!parse_upid("UPID:pve:zz:0123ABCD:65B8C0A1:qmclone:9000:root@pam:"));
  CHECK(!parse_upid("\"UPID:pve:1:2:3:qmclone:9000:root@pam:\""));
  CHECK(!parse_upid("UPID::1:2:3:qmclone:9000:root@pam:"));
}

TEST_CASE("task status") {
  auto running = parse_task_status(R"({"data":{"status":"running","upid":"x"}})");
  REQUIRE(running);
  CHECK(!running->stopped);
  auto ok = parse_task_status(R"({"data":{"status":"stopped","exitstatus":"OK"}})");
  REQUIRE(ok);
  CHECK(ok->stopped);
  CHECK(ok->exitstatus == "OK");
  auto bad = parse_task_status(R"({"status":"stopped","exitstatus":"clone failed: no space"})");
  CHECK(bad->exitstatus == "clone failed: no space");
  CHECK(parse_task_status(R"({"data":{"status":"stopped"}})")->exitstatus != "OK");
  CHECK(!parse_task_status(R"({"data":{"status":"weird"}})"));
  CHECK(!parse_task_status(R"({"data":{"status":"stop)"));
  CHECK(!parse_task_status(""));
}

TEST_CASE("REST envelopes and errors") {
  CHECK(rest_data_string(R"({"data":"UPID:pve:1:2:3:qmstart:101:root@pam:"})").value() ==
        "UPID:pve:1:2:3:qmstart:101:root@pam:");
  CHECK(!rest_data_string(R"({"data":null})"));
  CHECK(!rest_data_string(R"({"data":{"volid":"x:y"}})"));
  CHECK(rest_data_json(R"({"data":{"a":1}})").value() == R"({"a":1})");
  CHECK(!rest_data_json("<html>"));

  CHECK(rest_error_message(400, "Parameter verification failed.",
                           R"({"data":null,"errors":{"cores":"value must be >= 1"}})") ==
        "API error (status 400): Parameter verification failed.: cores: value must be >= 1");
  CHECK(rest_error_message(500, "", R"({"data":null})") ==
        "API error (status 500): {\"data\":null}");
  CHECK(rest_error_message(500, "VM 405 does not exist", R"({"data":null})") ==
        "API error (status 500): VM 405 does not exist");
  CHECK(rest_error_message(401, "", R"({"message":"no ticket"})") ==
        "API error (status 401): no ticket");
  auto multi = rest_error_message(400, "", R"({"errors":{"b":"2","a":"1"}})");
  CHECK(multi == "API error (status 400): a: 1, b: 2");
  auto hostile = rest_error_message(502, "", "\xff\xfe<html>");
  CHECK(hostile.find("\\xff") != std::string::npos);
}

TEST_CASE("net0 and cicustom builders") {
  CHECK(build_net0("", "vmbr1", std::nullopt) == "virtio,bridge=vmbr1");
  CHECK(build_net0("virtio,bridge=vmbr0", "vmbr1", std::nullopt) == "virtio,bridge=vmbr0");
  CHECK(build_net0("e1000", "", std::nullopt) == "e1000");
  CHECK(build_net0("virtio=AA:BB:CC:DD:EE:FF", "vmbr1", std::nullopt) ==
        "virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr1");
  CHECK(build_net0("virtio", "vmbr1", true) == "virtio,bridge=vmbr1,firewall=1");
  CHECK(build_net0("", "vmbr1", false) == "virtio,bridge=vmbr1,firewall=0");
  CHECK(build_cicustom("user=a,meta=b") == "user=a,meta=b");
  CHECK(build_cicustom("local:snippets/a.yaml") == "user=local:snippets/a.yaml");
}

TEST_CASE("name validation") {
  CHECK(valid_vm_name("sandbox-101"));
  CHECK(valid_vm_name("a.b-c"));
  CHECK(!valid_vm_name("bad name"));
  CHECK(!valid_vm_name("x;rm -rf /"));
  CHECK(!valid_vm_name("-x"));
  CHECK(!valid_vm_name(""));
  CHECK(valid_volume_name("vm-101-workspace-ab12"));
  CHECK(!valid_volume_name("../etc"));
  CHECK(!valid_volume_name("a b"));
  CHECK(valid_snapshot_name("before-run_1"));
  CHECK(!valid_snapshot_name("1abc"));
  CHECK(!valid_snapshot_name("current;x"));
  CHECK(valid_storage_id("local-zfs"));
  CHECK(!valid_storage_id("Local"));
  CHECK(!valid_storage_id("a b"));
  CHECK(valid_disk_slot("scsi1"));
  CHECK(valid_disk_slot("virtio15"));
  CHECK(!valid_disk_slot("scsi31"));
  CHECK(!valid_disk_slot("scsi01"));
  CHECK(!valid_disk_slot("net0"));
  CHECK(valid_cpuset("0-3"));
  CHECK(valid_cpuset("0,5,8-11"));
  CHECK(!valid_cpuset("3-1"));
  CHECK(!valid_cpuset("0-"));
  CHECK(!valid_cpuset("a"));
}

TEST_CASE("VM resources JSON") {
  auto r = parse_vm_resources_json(
      R"({"data":[{"id":"qemu/100","type":"qemu","node":"pve","vmid":100,"name":"sandbox-100","status":"running","maxmem":4294967296,"maxdisk":42949672960,"template":0},)"
      R"({"id":"qemu/9000","type":"qemu","node":"pve","vmid":9000,"name":"tpl","status":"stopped","template":1},)"
      R"({"id":"lxc/200","type":"lxc","node":"pve2","vmid":"200","status":"stopped","template":false},)"
      R"({"id":"qemu/x","type":"qemu"}]})");
  REQUIRE(r);
  REQUIRE(r->size() == 3);
  CHECK(r->at(0).info.vmid == 100);
  CHECK(r->at(0).info.status == VmPower::running);
  CHECK(r->at(0).info.memory_mb == 4096);
  CHECK(r->at(0).info.bootdisk_gb == doctest::Approx(40.0));
  CHECK(!r->at(0).info.is_template);
  CHECK(r->at(1).info.is_template);
  CHECK(r->at(2).type == "lxc");
  CHECK(r->at(2).node == "pve2");
  auto bare = parse_vm_resources_json(
      R"([{"vmid":101,"status":"running","qmpstatus":"paused","template":true}])");
  REQUIRE(bare);
  CHECK(bare->at(0).info.status == VmPower::paused);
  CHECK(bare->at(0).info.is_template);
  CHECK(!parse_vm_resources_json(R"({"data":[{"vmid":1)"));
  CHECK(!parse_vm_resources_json(R"({"data":{}})"));
}

TEST_CASE("spec checks shared by the backends name the first problem") {
  using namespace agentlab::proxmox;
  agentlab::engine::CloneSpec c;
  c.template_vmid = 9000;
  c.vmid = 101;
  c.name = "sandbox-101";
  CHECK(clone_spec_problem(c).empty());
  c.vmid = 99;
  CHECK(clone_spec_problem(c) == "clone: VMIDs must be within 100..999999999");
  c.vmid = 101;
  c.name = "bad name";
  CHECK(clone_spec_problem(c) == "clone: invalid VM name (want a DNS name)");
  agentlab::engine::VmConfigSpec v;
  v.affinity = "0-3";
  CHECK(config_spec_problem(101, v).empty());
  CHECK(config_spec_problem(5, v) == "configure: invalid VMID");
  v.affinity = "x";
  CHECK(config_spec_problem(101, v) == "configure: invalid affinity (want e.g. 0-3,8)");
  agentlab::engine::VolumeSpec vol;
  vol.storage = "local-zfs";
  vol.name = "vm-101-disk-1";
  vol.vmid = 101;
  vol.size_gb = 10;
  CHECK(volume_spec_problem(vol).empty());
  vol.size_gb = 0;
  CHECK(volume_spec_problem(vol) == "size_gb must be positive");
  vol.size_gb = 10;
  vol.name = "../x";
  CHECK(volume_spec_problem(vol) == "volume: invalid name");
}
