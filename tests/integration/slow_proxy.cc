#include "tests/integration/slow_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace primaps::testing {
namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

bool WriteAll(int fd, const char* data, ssize_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, data, static_cast<size_t>(n), MSG_NOSIGNAL);
    if (w <= 0) return false;
    data += w;
    n -= w;
  }
  return true;
}

}  // namespace

SlowProxy::SlowProxy(int target_port, std::chrono::milliseconds delay)
    : target_port_(target_port), delay_(delay) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = Loopback(0);
  socklen_t len = sizeof(addr);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::listen(listen_fd_, 16) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) !=
          0) {
    return;  // port() stays 0
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

SlowProxy::~SlowProxy() {
  stopping_ = true;
  // shutdown() wakes the threads blocked in accept() and recv().
  ::shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (std::thread& t : threads) t.join();
  for (int fd : fds_) ::close(fd);
  ::close(listen_fd_);
}

void SlowProxy::AcceptLoop() {
  while (!stopping_) {
    const int client = ::accept(listen_fd_, nullptr, nullptr);
    if (client < 0) return;
    const int server = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = Loopback(target_port_);
    if (::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
        0) {
      ::close(server);
      ::close(client);
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    fds_.push_back(client);
    fds_.push_back(server);
    threads_.emplace_back(
        [this, client, server] { Pump(client, server, false); });
    threads_.emplace_back(
        [this, client, server] { Pump(server, client, true); });
  }
}

void SlowProxy::Pump(int from, int to, bool hold_first) {
  char buffer[16384];
  while (true) {
    const ssize_t n = ::recv(from, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    if (hold_first) {
      std::this_thread::sleep_for(delay_);
      hold_first = false;
    }
    if (stopping_ || !WriteAll(to, buffer, n)) break;
  }
  // Pass the close on so the peer's reader ends too.
  ::shutdown(to, SHUT_WR);
}

}  // namespace primaps::testing
