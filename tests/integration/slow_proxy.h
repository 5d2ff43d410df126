// A loopback TCP proxy that holds back the first bytes each connection's
// server side sends, so a client sees a slow handshake (a loaded or distant
// server) against a real server.
#ifndef PRIMAPS_TESTS_INTEGRATION_SLOW_PROXY_H_
#define PRIMAPS_TESTS_INTEGRATION_SLOW_PROXY_H_

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace primaps::testing {

class SlowProxy {
 public:
  // Listens on 127.0.0.1, a free port, and forwards every connection to
  // 127.0.0.1:`target_port`, delaying the server's first reply by `delay`.
  SlowProxy(int target_port, std::chrono::milliseconds delay);
  // Closes the listener and every connection, and joins their threads.
  ~SlowProxy();

  int port() const { return port_; }

 private:
  void AcceptLoop();
  // Copies `from` to `to` until either side closes; sleeps `delay_` before
  // the first write when `hold_first` is set.
  void Pump(int from, int to, bool hold_first);

  const int target_port_;
  const std::chrono::milliseconds delay_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::vector<int> fds_;              // guarded by mu_
  std::vector<std::thread> threads_;  // guarded by mu_
  std::thread acceptor_;
};

}  // namespace primaps::testing

#endif  // PRIMAPS_TESTS_INTEGRATION_SLOW_PROXY_H_
