// agentlabd: the agentlab daemon. Loads /etc/agentlab/config.yaml (or --config) and the
// profiles directory, then runs until SIGTERM/SIGINT.
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "adapters/config/config.h"
#include "adapters/config/profiles.h"
#include "adapters/sim/pve_schema.h"
#include "cli/agentlabd/daemon.h"

#ifndef AGENTLAB_VERSION
#define AGENTLAB_VERSION "dev"
#endif

namespace {

using namespace agentlab;

constexpr int kExitUsage = 2;

engine::Profiles to_engine_profiles(const config::ProfileSet& set) {
  engine::Profiles out;
  for (const auto& p : set.profiles()) out.emplace(p.name, p);
  return out;
}

// The agent subnet: agent_subnet, else derived from the bootstrap listen address (an IPv4
// literal gives its /16, IPv6 its /64, a hostname or wildcard none).
std::string agent_subnet_of(const config::Config& c) {
  if (!c.agent_subnet.empty()) {
    auto cidr = config::parse_cidr(c.agent_subnet);
    return cidr ? cidr->to_string() : c.agent_subnet;
  }
  std::string host = c.bootstrap_listen.substr(0, c.bootstrap_listen.rfind(':'));
  if (!host.empty() && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (config::is_wildcard_host(host)) return {};
  bool v6 = host.find(':') != std::string::npos;
  auto cidr = config::parse_cidr(host + (v6 ? "/64" : "/16"));
  return cidr ? cidr->to_string() : std::string();
}

// "10.77.0.0/16" -> "10.77." (the effect runner prefers guest addresses with this prefix).
std::string cidr_prefix(const std::string& cidr) {
  if (cidr.empty() || cidr.find(':') != std::string::npos) return {};
  auto slash = cidr.find('/');
  int bits = slash == std::string::npos ? 32 : std::atoi(cidr.c_str() + slash + 1);
  std::string addr = cidr.substr(0, slash);
  int octets = bits / 8;
  std::string out;
  size_t pos = 0;
  for (int i = 0; i < octets && pos != std::string::npos; ++i) {
    size_t dot = addr.find('.', pos);
    out += addr.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos + 1);
    pos = dot == std::string::npos ? dot : dot + 1;
  }
  return out;
}

daemon::DaemonOptions build_options(const config::Config& c, const config::ProfileSet& profiles) {
  daemon::DaemonOptions o;
  o.version = AGENTLAB_VERSION;
  o.config_path = c.config_path;
  o.socket_path = c.socket_path;
  o.bootstrap_listen = c.bootstrap_listen;
  o.artifact_listen = c.artifact_listen;
  o.metrics_listen = c.metrics_listen;
  o.controller_url = c.controller_url;
  o.state_dir = c.state_dir.empty() ? c.data_dir : c.state_dir;
  o.backend = c.proxmox_backend;
  o.ssh_public_key = c.ssh_public_key;

  auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(c.proxmox_command_timeout);
  proxmox::SnippetOptions snippets;
  snippets.dir = c.snippets_dir;
  snippets.storage = c.snippet_storage;
  o.shell.node = c.proxmox_node;
  o.shell.command_timeout = timeout;
  o.shell.snippets = snippets;
  o.rest.api_url = c.proxmox_api_url;
  o.rest.api_token = c.proxmox_api_token;
  o.rest.node = c.proxmox_node;
  o.rest.command_timeout = timeout;
  o.rest.tls_insecure = c.proxmox_api_insecure;
  o.rest.ca_file = c.proxmox_api_ca_file;
  o.rest.snippets = snippets;
  o.sim.state_dir = c.sim_state_dir;
  o.sim.time_scale = c.sim_time_scale;
  o.sim.guest_command = c.sim_guest_command;
  if (const char* schema = std::getenv("AGENTLAB_PVE_SCHEMA")) o.sim.schema_path = schema;

  auto ns = [](config::Duration d) {
    return static_cast<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
  };
  o.engine.provisioning_timeout_ns = ns(c.provisioning_timeout);
  o.engine.concurrency_cap = c.max_concurrent_jobs;
  o.engine.bootstrap_token_ttl_ns = ns(c.bootstrap_token_ttl);
  o.engine.artifact_token_ttl_ns =
      static_cast<int64_t>(c.artifact_token_ttl_minutes) * 60 * 1'000'000'000;
  o.engine.idle_stop_ns = ns(c.idle_stop);
  o.engine.artifact_retention_ns = ns(c.artifact_retention);
  o.engine.artifact_retention_bytes = c.artifact_retention_bytes;
  o.engine.clone_mode =
      c.clone_mode == "full" ? engine::CloneMode::full : engine::CloneMode::linked;
  for (const auto& p : profiles.profiles()) o.engine.reserved_vmids.insert(p.template_vmid);
  o.engine.reserved_vmids.insert(engine::kWorkspaceOwnerVmid);
  o.profiles = to_engine_profiles(profiles);
  const std::string dir = c.profiles_dir;
  o.reload_profiles = [dir]() -> Result<engine::Profiles> {
    auto set = config::ProfileSet::load(dir);
    if (!set) return std::unexpected(set.error());
    return to_engine_profiles(*set);
  };

  o.api.artifact_dir = c.artifact_dir;
  o.api.artifact_max_bytes = static_cast<uint64_t>(c.artifact_max_bytes);
  o.api.provisioning_wait_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(c.provisioning_timeout).count() +
      30000);
  o.api.agent_subnet = agent_subnet_of(c);
  o.api.accept_unauthenticated_reports = c.accept_unauthenticated_reports;
  o.api.artifact_upload_url = c.artifact_upload_url;
  o.api.secrets_dir = c.secrets_dir;
  o.api.secrets_bundle = c.secrets_bundle;
  o.api.secrets_age_key_path = c.secrets_age_key_path;
  o.api.secrets_sops_path = c.secrets_sops_path;
  o.agent_cidr_prefix = cidr_prefix(o.api.agent_subnet);
  o.reconcile_interval_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(c.reconcile_interval).count());
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  // A fixed mmap threshold: glibc's default raises it to the size of any large block freed
  // (start-up frees a few of 1-2 MiB), after which LMDB's 3 MiB of per-environment tables and
  // later large buffers come from the heap, where their pages stay resident after use.
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  CLI::App app{
      "agentlabd — the agentlab daemon: an event-sourced control plane for AI coding agents "
      "in disposable Proxmox VMs"};
  app.footer(
      "Examples:\n"
      "  agentlabd --config /etc/agentlab/config.yaml\n"
      "  agentlabd --config ./config.yaml --check-config\n\n"
      "Without Proxmox (no `qm` on PATH and no proxmox_backend in the file) the embedded "
      "simulator\n"
      "backend is used. SIGHUP reloads the profiles; SIGTERM drains and exits 0.\n"
      "Exit codes: 0 clean exit, 1 runtime failure, 2 invalid configuration or usage.");
  std::string config_path(config::kDefaultConfigPath);
  bool check = false, version = false;
  app.add_option("-c,--config", config_path, "config file")->capture_default_str();
  app.add_flag("--check-config", check, "validate the config file and the profiles, then exit");
  app.add_flag("--version", version, "print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  if (version) {
    std::printf("version=%s commit=none date=unknown\n", AGENTLAB_VERSION);
    return 0;
  }
  if (const char* level = std::getenv("AGENTLAB_LOG_LEVEL"))
    spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  auto cfg = config::load_config(config_path);
  if (!cfg) {
    std::fprintf(stderr, "config error: %s\n", cfg.error().message.c_str());
    return kExitUsage;
  }
  for (const auto& k : cfg->unknown_keys)
    spdlog::warn("config {}: unknown key {} ignored", config_path, k);
  auto profiles = config::ProfileSet::load(cfg->profiles_dir);
  if (!profiles) {
    std::fprintf(stderr, "config error: %s\n", profiles.error().message.c_str());
    return kExitUsage;
  }
  if (check) {
    std::printf("config ok: %s (backend %s), %zu profile(s) from %s\n", config_path.c_str(),
                cfg->proxmox_backend.c_str(), profiles->size(), cfg->profiles_dir.c_str());
    for (const auto& p : profiles->profiles())
      if (!p.invalid_reason.empty()) std::printf("  warning: %s\n", p.invalid_reason.c_str());
    return 0;
  }
  return daemon::run_daemon(build_options(*cfg, *profiles));
}
