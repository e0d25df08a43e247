// A fake Hypervisor for engine tests: completes every call through the Scheduler (never
// synchronously), records the calls, and can fail the next one.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/hypervisor.h"
#include "engine/timer.h"

namespace agentlab::engine::test {

class FakeHypervisor final : public Hypervisor {
 public:
  explicit FakeHypervisor(Scheduler& s) : s_(s) {}
  std::vector<std::string> calls;
  std::optional<Error> fail_next;
  std::string last_snippet;
  int guest_ready_after = 1;  // answers until an address shows up

  template <class T>
  void later(Done<T> done, T value) {
    std::optional<Error> e = std::exchange(fail_next, std::nullopt);
    s_.after(0, [done, value, e] {
      if (e)
        done(std::unexpected(*e));
      else
        done(value);
    });
  }
  void later_void(Done<void> done) {
    std::optional<Error> e = std::exchange(fail_next, std::nullopt);
    s_.after(0, [done, e] {
      if (e)
        done(std::unexpected(*e));
      else
        done({});
    });
  }

  void next_vmid(int min, Done<int> d) override { later(d, min); }
  void clone(const CloneSpec& c, Done<void> d) override {
    calls.push_back("clone " + std::to_string(c.template_vmid) + " " + std::to_string(c.vmid));
    later_void(d);
  }
  void configure(int, const VmConfigSpec&, Done<void> d) override {
    calls.push_back("configure");
    later_void(d);
  }
  void validate_template(int, Done<void> d) override { later_void(d); }
  void write_snippet(const SnippetSpec& s, Done<SnippetRef> d) override {
    last_snippet = s.content;
    std::string f = "agentlab-" + std::to_string(s.vmid) + ".yaml";
    later(d, SnippetRef{"local:snippets/" + f, "/var/lib/vz/snippets/" + f});
  }
  void remove_snippet(const SnippetRef&, Done<void> d) override { later_void(d); }
  void start(int, Done<void> d) override {
    calls.push_back("start");
    later_void(d);
  }
  void shutdown(int, int, Done<void> d) override {
    calls.push_back("shutdown");
    later_void(d);
  }
  void stop(int, Done<void> d) override {
    calls.push_back("stop");
    later_void(d);
  }
  void suspend(int, Done<void> d) override { later_void(d); }
  void resume(int, Done<void> d) override { later_void(d); }
  void destroy(int, Done<void> d) override {
    calls.push_back("destroy");
    later_void(d);
  }
  void status(int, Done<VmPower> d) override { later(d, VmPower::running); }
  void list_vms(Done<std::vector<VmInfo>> d) override { later(d, std::vector<VmInfo>{}); }
  void guest_interfaces(int, Done<std::vector<GuestInterface>> d) override {
    std::vector<GuestInterface> ifs;
    if (--guest_ready_after <= 0)
      ifs.push_back(GuestInterface{"eth0", "", {{"10.77.0.5", "ipv4", 16}}});
    later(d, ifs);
  }
  void snapshot_create(int, const std::string&, Done<void> d) override { later_void(d); }
  void snapshot_rollback(int, const std::string&, Done<void> d) override { later_void(d); }
  void snapshot_delete(int, const std::string&, Done<void> d) override { later_void(d); }
  void volume_create(const VolumeSpec& v, Done<std::string> d) override {
    later(d, v.storage + ":" + v.name);
  }
  void volume_attach(int, const std::string&, const std::string&, Done<void> d) override {
    later_void(d);
  }
  void volume_detach(int, const std::string&, Done<void> d) override { later_void(d); }
  void volume_delete(const std::string& v, Done<void> d) override {
    calls.push_back("volume_delete " + v);
    later_void(d);
  }
  void host_capacity(Done<HostCapacity> d) override {
    later(d, HostCapacity{8, 16, 65536, 0, 1000, 900});
  }

 private:
  Scheduler& s_;
};

}  // namespace agentlab::engine::test
