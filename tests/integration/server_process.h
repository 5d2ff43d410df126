// Starts the real primaps-server binary on free loopback ports for a test,
// and stops it.
#ifndef PRIMAPS_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define PRIMAPS_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace primaps::testing {

class ServerProcess {
 public:
  // Starts primaps-server with `flags` plus --listen, --metrics_listen and
  // --http_listen on 127.0.0.1 port 0 (unless given), and waits until it
  // logs its ports.
  explicit ServerProcess(std::vector<std::string> flags);
  // SIGKILLs the server if it is still running.
  ~ServerProcess();

  bool started() const { return grpc_port_ > 0; }
  std::string address() const {
    return "127.0.0.1:" + std::to_string(grpc_port_);
  }
  int metrics_port() const { return metrics_port_; }
  // 0 when started with --http_listen= (off).
  int http_port() const { return http_port_; }
  pid_t pid() const { return pid_; }
  // The server's log so far.
  std::string Log() const;
  // Sends `signal` and waits for the exit; returns the exit status (or
  // -1 on a signal death).
  int Stop(int signal);

 private:
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  int http_port_ = 0;
  std::string log_path_;
};

// Starts `binary` with `args`, its stdout and stderr going to `log`;
// returns the pid (not waited for), always > 0 (aborts if fork fails).
pid_t SpawnProcess(const std::string& binary, std::vector<std::string> args,
                   const std::string& log);

// Waits for `pid`; its exit code, or -1 when a signal ended it.
int WaitProcess(pid_t pid);

// The whole text of a file ("" when missing).
std::string ReadText(const std::string& path);

// A TCP connection to 127.0.0.1:`port` (a socket to close), or -1.
int ConnectLoopback(int port);

// The body of GET `path` on 127.0.0.1:`port` ("" when unreachable).
std::string HttpGet(int port, const std::string& path);

// The sum of a server's primaps_requests_total series (streams count
// images), read from its /metrics endpoint.
double RequestsServed(int metrics_port);

// The value of an unlabelled series (e.g. "primaps_active_calls") on a
// server's /metrics endpoint; -1 when absent or unreachable.
double MetricValue(int metrics_port, const std::string& name);

// The resident memory of process `pid`, in bytes.
int64_t ResidentBytes(pid_t pid);

// A temporary directory, removed with its contents.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& bytes) const;

 private:
  std::string path_;
};

}  // namespace primaps::testing

#endif  // PRIMAPS_TESTS_INTEGRATION_SERVER_PROCESS_H_
