// The simulator's timing and failure model, calibrated on ../shared/spec/performance-seed.md.
//
// Each provisioning phase draws its duration from a "piecewise lognormal": z ~ N(0,1) is mapped
// through a curve that is linear in log-time between the seed's median (z = 0), P95 (z = 1.645)
// and P99 (z = 2.326), so the sampled median / P95 / P99 equal the seed's by construction while
// the body stays lognormal. Storage backend, template size, clone mode and host overcommit then
// stretch the draw. Durations are modelled seconds; the caller multiplies by time_scale.
//
// The host model turns the VMs that are running into a load figure (vCPU demand over host threads,
// or memory demand over usable RAM, whichever is higher). Above 1.0 operations slow down and fail
// with a probability that grows with the overcommit; the constants below are what
// bench-sim-calibration checks against the seed's throughput table.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace agentlab::sim {

enum class Op {
  clone,
  start,
  cloud_init,
  agent_ready,
  stop,
  shutdown,
  destroy,
  snapshot,
  suspend,
};

std::string_view op_name(Op op);

enum class StorageKind { zfs, lvm_thin, dir, ceph };

// "zfspool" / "zfs" -> zfs, "lvmthin" -> lvm_thin, "dir" -> dir, "rbd" / "ceph" -> ceph.
StorageKind storage_kind_from(std::string_view pve_type);

struct Quantiles {
  double p50 = 0, p95 = 0, p99 = 0;  // seconds
};

// The seed's numbers for an op on the reference host (ZFS, 30 GB template, linked clone, idle).
Quantiles seed_quantiles(Op op);

struct OpContext {
  StorageKind storage = StorageKind::zfs;
  double template_gb = 30;
  bool full_clone = false;
  double load = 0;  // host overcommit figure, see HostSpec::load
  // The VM's own "slowness" draw, shared by its provisioning phases (a host or image that is slow
  // is slow throughout). Phase draws use z = rho * common_z + sqrt(1 - rho^2) * own noise, so each
  // phase keeps the seed's quantiles while the total gets the seed's heavier tail.
  std::optional<double> common_z;
};

// Correlation of one VM's provisioning phases.
inline constexpr double kPhaseCorrelation = 0.9;

struct HostSpec {
  int cores = 8;
  int threads = 16;
  uint64_t memory_mb = 65536;
  uint64_t reserved_memory_mb = 4096;  // Proxmox itself (seed: "Physical RAM - 4GB")
  uint64_t vm_overhead_mb = 200;       // QEMU per VM (seed: ~200MB)
  uint64_t storage_gb = 2048;

  // max(vCPUs / threads, (VM memory + overhead) / usable memory).
  double load(int vcpus, uint64_t vm_memory_mb, int vm_count) const;
};

// Duration multiplier for work done at this load (1.0 up to full use of the host).
double overcommit_slowdown(double load);
// Probability that one provisioning step (clone, start, boot) fails at this load. Includes the
// seed's ~1% baseline failure rate, spread over three steps.
double step_failure_probability(double load);

class LatencyModel {
 public:
  explicit LatencyModel(uint64_t seed) : rng_(seed) {}

  // Modelled seconds for one op (not scaled by time_scale).
  double sample(Op op, const OpContext& ctx);
  // Uniform [0, 1), from the same seeded stream.
  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }
  // A standard normal draw (for OpContext::common_z).
  double normal() { return std::normal_distribution<double>(0.0, 1.0)(rng_); }
  std::mt19937_64& rng() { return rng_; }

  // Total-provisioning multiplier for a template size: ~15 s at 5 GB, ~25 s at 30 GB, ~45 s at
  // 100 GB (seed), relative to 30 GB.
  static double template_size_factor(double template_gb);

 private:
  std::mt19937_64 rng_;
};

}  // namespace agentlab::sim
