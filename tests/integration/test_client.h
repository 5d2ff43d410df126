// A client of a test's server: no retries (a test sees the first answer)
// and a deadline long enough for a ViT on a loaded machine.
#ifndef PRIMAPS_TESTS_INTEGRATION_TEST_CLIENT_H_
#define PRIMAPS_TESTS_INTEGRATION_TEST_CLIENT_H_

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "client/primaps_client.h"
#include "tests/integration/server_process.h"

namespace primaps::testing {

inline std::unique_ptr<PrimapsClient> Client(const ServerProcess& server,
                                             const std::string& token = "") {
  ClientOptions options;
  options.target = server.address();
  options.admin_token = token;
  options.retries = 0;
  options.deadline = absl::Seconds(120);
  return *PrimapsClient::Create(options);
}

}  // namespace primaps::testing

#endif  // PRIMAPS_TESTS_INTEGRATION_TEST_CLIENT_H_
