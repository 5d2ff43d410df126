#include "tests/integration/server_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace primaps::testing {

ServerProcess::ServerProcess(std::vector<std::string> flags) {
  char pattern[] = "/tmp/primaps_server_log_XXXXXX";
  const int fd = ::mkstemp(pattern);
  log_path_ = pattern;
  flags.insert(flags.begin(), PRIMAPS_SERVER_BIN);
  auto has = [&flags](const std::string& prefix) {
    for (const std::string& f : flags) {
      if (f.rfind(prefix, 0) == 0) return true;
    }
    return false;
  };
  if (!has("--listen=")) flags.push_back("--listen=127.0.0.1:0");
  if (!has("--metrics_listen="))
    flags.push_back("--metrics_listen=127.0.0.1:0");
  if (!has("--http_listen=")) flags.push_back("--http_listen=127.0.0.1:0");
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(fd, 2);
    ::dup2(fd, 1);
    std::vector<char*> argv;
    for (std::string& f : flags) argv.push_back(f.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fd);
  const std::regex ports(
      "serving on port ([0-9]+), metrics on port ([0-9]+), http on port "
      "([0-9]+)");
  for (int i = 0; i < 600 && grpc_port_ == 0; ++i) {
    std::smatch m;
    const std::string log = Log();
    if (std::regex_search(log, m, ports)) {
      grpc_port_ = std::stoi(m[1]);
      metrics_port_ = std::stoi(m[2]);
      http_port_ = std::stoi(m[3]);
      break;
    }
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      break;  // exited during start-up; Log() says why
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  ::unlink(log_path_.c_str());
}

std::string ServerProcess::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int ServerProcess::Stop(int signal) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, signal);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

pid_t SpawnProcess(const std::string& binary, std::vector<std::string> args,
                   const std::string& log) {
  const pid_t pid = ::fork();
  if (pid < 0) {
    // Callers SIGKILL the pid they get, and kill(-1) would signal every
    // process of the user: a test that cannot fork stops here.
    std::perror("SpawnProcess: fork");
    std::abort();
  }
  if (pid == 0) {
    FILE* f = std::fopen(log.c_str(), "w");
    ::dup2(fileno(f), 1);
    ::dup2(fileno(f), 2);
    args.insert(args.begin(), binary);
    std::vector<char*> raw;
    for (auto& a : args) raw.push_back(a.data());
    raw.push_back(nullptr);
    ::execv(raw[0], raw.data());
    ::_exit(127);
  }
  return pid;
}

int WaitProcess(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TempDir::TempDir() {
  char pattern[] = "/tmp/primaps_test_XXXXXX";
  path_ = ::mkdtemp(pattern);
}

TempDir::~TempDir() { std::filesystem::remove_all(path_); }

std::string TempDir::Write(const std::string& name,
                           const std::string& bytes) const {
  const std::string path = path_ + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

int ConnectLoopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string HttpGet(int port, const std::string& path) {
  const int fd = ConnectLoopback(port);
  if (fd < 0) return "";
  const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
  ::send(fd, request.data(), request.size(), 0);
  std::string response;
  char buffer[4096];
  ssize_t n;
  while ((n = ::recv(fd, buffer, sizeof(buffer), 0)) > 0)
    response.append(buffer, n);
  ::close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

double RequestsServed(int metrics_port) {
  const std::string metrics = HttpGet(metrics_port, "/metrics");
  const std::string name = "primaps_requests_total{";
  double total = 0;
  for (size_t at = metrics.find(name); at != std::string::npos;
       at = metrics.find(name, at + 1)) {
    if (at > 0 && metrics[at - 1] != '\n') continue;  // a comment line
    const size_t space = metrics.find(' ', metrics.find('}', at));
    total += std::stod(metrics.substr(space + 1));
  }
  return total;
}

int64_t ResidentBytes(pid_t pid) {
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  int64_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

double MetricValue(int metrics_port, const std::string& name) {
  const std::string metrics = HttpGet(metrics_port, "/metrics");
  const std::string line = name + " ";
  for (size_t at = metrics.find(line); at != std::string::npos;
       at = metrics.find(line, at + 1)) {
    if (at > 0 && metrics[at - 1] != '\n') continue;
    return std::stod(metrics.substr(at + line.size()));
  }
  return -1;
}

}  // namespace primaps::testing
