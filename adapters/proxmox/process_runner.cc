#include "adapters/proxmox/process_runner.h"

#include <signal.h>
#include <unistd.h>

#include <set>

extern char** environ;

namespace agentlab::proxmox {

namespace {

using Clock = std::chrono::steady_clock;

// One running command. It owns every libuv handle it uses (process, two pipes, one timer) and
// deletes itself after the last close callback, which is also where `done` runs: so `done` is
// never synchronous and never sees a half-closed command.
class Command {
 public:
  Command(uv_loop_t* loop, std::shared_ptr<ProcessRunner::Shared> shared, CommandSpec spec,
          engine::Done<CommandResult> done);
  void start();
  void cancel();

 private:
  static Command* self(uv_handle_t* h) { return static_cast<Command*>(h->data); }
  void on_exit(int64_t status, int signal);
  void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  void on_timer();
  void signal_group(int sig);
  void maybe_finish();
  void finish();
  void on_closed();
  void complete();

  uv_loop_t* loop_;
  std::shared_ptr<ProcessRunner::Shared> shared_;
  CommandSpec spec_;
  engine::Done<CommandResult> done_;

  uv_process_t proc_{};
  uv_pipe_t out_{};
  uv_pipe_t err_{};
  uv_timer_t timer_{};
  int open_handles_ = 0;

  bool exited_ = false;
  bool out_eof_ = false;
  bool err_eof_ = false;
  bool timed_out_ = false;
  bool kill_sent_ = false;
  bool cancelled_ = false;
  bool finishing_ = false;
  int spawn_error_ = 0;
  int pid_ = 0;
  Clock::time_point started_;
  CommandResult result_;
};

}  // namespace

struct ProcessRunner::Shared {
  std::set<Command*> live;
};

namespace {

Command::Command(uv_loop_t* loop, std::shared_ptr<ProcessRunner::Shared> shared, CommandSpec spec,
                 engine::Done<CommandResult> done)
    : loop_(loop), shared_(std::move(shared)), spec_(std::move(spec)), done_(std::move(done)) {
  proc_.data = out_.data = err_.data = timer_.data = this;
}

void Command::start() {
  shared_->live.insert(this);
  started_ = Clock::now();
  uv_pipe_init(loop_, &out_, 0);
  uv_pipe_init(loop_, &err_, 0);
  uv_timer_init(loop_, &timer_);
  open_handles_ = 3;
  if (spec_.argv.empty()) {
    spawn_error_ = UV_EINVAL;
    finish();
    return;
  }

  std::vector<char*> argv;
  for (std::string& a : spec_.argv) argv.push_back(a.data());
  argv.push_back(nullptr);

  // The environment: ours, with spec_.env entries replacing same-named variables.
  std::vector<std::string> env_store;
  std::vector<char*> envp;
  if (!spec_.env.empty()) {
    auto name_of = [](std::string_view e) { return e.substr(0, e.find('=')); };
    for (char** e = environ; e && *e; ++e) {
      std::string_view cur(*e);
      bool replaced = false;
      for (const std::string& x : spec_.env) replaced |= name_of(x) == name_of(cur);
      if (!replaced) env_store.emplace_back(cur);
    }
    for (const std::string& x : spec_.env) env_store.push_back(x);
    for (std::string& e : env_store) envp.push_back(e.data());
    envp.push_back(nullptr);
  }

  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(&out_);
  stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(&err_);

  uv_process_options_t opts{};
  opts.file = argv[0];
  opts.args = argv.data();
  opts.env = envp.empty() ? nullptr : envp.data();
  opts.stdio_count = 3;
  opts.stdio = stdio;
  // A new session makes the child a process-group leader, so a deadline kills everything it
  // started (e.g. a qm that forked a worker), not just the direct child.
  opts.flags = UV_PROCESS_DETACHED;
  opts.exit_cb = [](uv_process_t* p, int64_t status, int sig) {
    self(reinterpret_cast<uv_handle_t*>(p))->on_exit(status, sig);
  };

  // On unix uv_spawn initialises the process handle even when it fails, so it is closed below
  // in both cases.
  int rc = uv_spawn(loop_, &proc_, &opts);
  ++open_handles_;
  if (rc != 0) {
    spawn_error_ = rc;
    finish();
    return;
  }
  pid_ = proc_.pid;
  auto alloc = [](uv_handle_t*, size_t suggested, uv_buf_t* buf) {
    buf->base = new char[suggested];
    buf->len = suggested;
  };
  auto read = [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    self(reinterpret_cast<uv_handle_t*>(s))->on_read(s, n, buf);
  };
  uv_read_start(reinterpret_cast<uv_stream_t*>(&out_), alloc, read);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&err_), alloc, read);
  if (spec_.timeout.count() > 0) {
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { self(reinterpret_cast<uv_handle_t*>(t))->on_timer(); },
        static_cast<uint64_t>(spec_.timeout.count()), 0);
  }
}

void Command::cancel() {
  if (finishing_) return;
  cancelled_ = true;
  if (!exited_) {
    signal_group(SIGKILL);
    kill_sent_ = true;
  } else {
    finish();
  }
}

void Command::signal_group(int sig) {
  if (pid_ <= 0) return;
  // Never kill(-0): pid_ is only set after a successful spawn.
  if (::kill(-pid_, sig) != 0) uv_process_kill(&proc_, sig);
}

void Command::on_exit(int64_t status, int sig) {
  exited_ = true;
  result_.exit_status = status;
  result_.term_signal = sig;
  maybe_finish();
}

void Command::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  bool is_out = stream == reinterpret_cast<uv_stream_t*>(&out_);
  if (nread > 0) {
    std::string& sink = is_out ? result_.out : result_.err;
    size_t room = spec_.max_output > sink.size() ? spec_.max_output - sink.size() : 0;
    size_t take = std::min(room, static_cast<size_t>(nread));
    sink.append(buf->base, take);
    if (take < static_cast<size_t>(nread)) result_.truncated = true;
  }
  delete[] buf->base;
  if (nread < 0) {  // UV_EOF or a read error: either way this stream is done
    uv_read_stop(stream);
    (is_out ? out_eof_ : err_eof_) = true;
    maybe_finish();
  }
}

void Command::on_timer() {
  if (exited_) {
    // The process is gone but something it started still holds a pipe open; stop waiting.
    finish();
    return;
  }
  if (!timed_out_) {
    timed_out_ = true;
    signal_group(SIGTERM);
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { self(reinterpret_cast<uv_handle_t*>(t))->on_timer(); },
        static_cast<uint64_t>(std::max<int64_t>(spec_.kill_grace.count(), 1)), 0);
  } else if (!kill_sent_) {
    kill_sent_ = true;
    signal_group(SIGKILL);
  }
}

void Command::maybe_finish() {
  if (exited_ && out_eof_ && err_eof_) finish();
}

void Command::finish() {
  if (finishing_) return;
  finishing_ = true;
  result_.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_);
  auto closed = [](uv_handle_t* h) { self(h)->on_closed(); };
  for (uv_handle_t* h :
       {reinterpret_cast<uv_handle_t*>(&proc_), reinterpret_cast<uv_handle_t*>(&out_),
        reinterpret_cast<uv_handle_t*>(&err_), reinterpret_cast<uv_handle_t*>(&timer_)}) {
    if (h->type != UV_UNKNOWN_HANDLE && !uv_is_closing(h)) {
      uv_close(h, closed);
    }
  }
}

void Command::on_closed() {
  if (--open_handles_ == 0) complete();
}

void Command::complete() {
  shared_->live.erase(this);
  Result<CommandResult> r;
  std::string what = render_argv(spec_.argv);
  if (spawn_error_ != 0) {
    r = fail(ErrorCode::unavailable, "cannot run " + what + ": " + uv_strerror(spawn_error_),
             spawn_error_);
  } else if (cancelled_) {
    r = fail(ErrorCode::cancelled, what + ": cancelled (runner shut down)");
  } else if (timed_out_) {
    r = fail(ErrorCode::timeout,
             what + ": timed out after " + std::to_string(spec_.timeout.count()) + " ms; killed");
  } else {
    r = std::move(result_);
  }
  auto done = std::move(done_);
  delete this;
  done(std::move(r));
}

}  // namespace

std::string render_argv(const std::vector<std::string>& argv) {
  std::string out;
  for (const std::string& a : argv) {
    if (!out.empty()) out += ' ';
    if (!a.empty() && a.find_first_of(" \t\n'\"\\$") == std::string::npos) {
      out += a;
    } else {
      out += '\'';
      for (char c : a) {
        if (c == '\'')
          out += "'\\''";
        else
          out += c;
      }
      out += '\'';
    }
  }
  return out;
}

ProcessRunner::ProcessRunner(uv_loop_t* loop) : loop_(loop), shared_(std::make_shared<Shared>()) {}

ProcessRunner::~ProcessRunner() {
  // cancel() may finish a command (closing handles) but never erases it synchronously: the
  // erase happens in a close callback, so iterating a copy is only for safety.
  std::vector<Command*> live(shared_->live.begin(), shared_->live.end());
  for (Command* c : live) c->cancel();
}

void ProcessRunner::run(CommandSpec spec, engine::Done<CommandResult> done) {
  auto* cmd = new Command(loop_, shared_, std::move(spec), std::move(done));
  cmd->start();
}

size_t ProcessRunner::running() const {
  return shared_->live.size();
}

}  // namespace agentlab::proxmox
