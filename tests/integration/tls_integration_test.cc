// TLS and mTLS with certificates made by the test (Debian's openssl).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "client/primaps_client.h"
#include "tests/integration/server_process.h"
#include "tests/integration/slow_proxy.h"

namespace primaps {
namespace {

using ::primaps::testing::ServerProcess;
using ::primaps::testing::SlowProxy;
using ::primaps::testing::TempDir;

// A CA, a server certificate for 127.0.0.1/localhost and a client
// certificate, all signed by the CA.
bool MakeCertificates(const std::string& dir) {
  const std::string script =
      "set -e; cd '" + dir +
      "'; "
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem "
      "-days 2 -subj /CN=test-ca "
      "2>/dev/null; "
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > san.ext; "
      "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
      "-subj /CN=localhost 2>/dev/null; "
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
      "-CAcreateserial -out server.pem -days 2 "
      "-extfile san.ext 2>/dev/null; "
      "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
      "-subj /CN=client 2>/dev/null; "
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key "
      "-CAcreateserial -out client.pem -days 2 "
      "2>/dev/null";
  return std::system(("bash -c \"" + script + "\"").c_str()) == 0;
}

// The server's health ("SERVING"), or the client's error as text, so that a
// failed call fails the expectation instead of aborting the test.
std::string Health(const std::string& address, const std::string& dir, bool tls,
                   bool client_cert) {
  ClientOptions options;
  options.target = address;
  options.retries = 0;
  options.deadline = absl::Seconds(5);
  if (tls) options.tls_ca = dir + "/ca.pem";
  if (client_cert) {
    options.tls_cert = dir + "/client.pem";
    options.tls_key = dir + "/client.key";
  }
  auto client = PrimapsClient::Create(options);
  if (!client.ok()) return client.status().ToString();
  absl::StatusOr<std::string> health = (*client)->Health();
  return health.ok() ? *health : health.status().ToString();
}

// The port a ServerProcess listens on.
std::string Port(const ServerProcess& server) {
  return server.address().substr(server.address().rfind(':') + 1);
}

// Each test gets fresh certificates in its own directory.
class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v openssl > /dev/null") != 0)
      GTEST_SKIP() << "openssl not installed";
    ASSERT_TRUE(MakeCertificates(dir_.path()));
  }

  // primaps-server flags that serve TLS with the test's server certificate.
  std::vector<std::string> TlsFlags() const {
    return {"--tls_cert=" + dir_.path() + "/server.pem",
            "--tls_key=" + dir_.path() + "/server.key"};
  }

  TempDir dir_;
};

TEST_F(TlsTest, TlsAndMutualTls) {
  {
    ServerProcess server(TlsFlags());
    ASSERT_TRUE(server.started()) << server.Log();
    const std::string address = "localhost:" + Port(server);
    EXPECT_EQ(Health(address, dir_.path(), /*tls=*/true, false), "SERVING");
    EXPECT_NE(Health(address, dir_.path(), /*tls=*/false, false),
              "SERVING");  // plaintext refused
  }
  {
    std::vector<std::string> flags = TlsFlags();
    flags.push_back("--tls_client_ca=" + dir_.path() + "/ca.pem");
    ServerProcess server(flags);
    ASSERT_TRUE(server.started()) << server.Log();
    const std::string address = "localhost:" + Port(server);
    EXPECT_EQ(Health(address, dir_.path(), true, /*client_cert=*/true),
              "SERVING");
    EXPECT_NE(Health(address, dir_.path(), true, /*client_cert=*/false),
              "SERVING");  // no client cert
  }
}

// A handshake that takes a second (a loaded or distant server) still
// connects: the client must not cap how long a connection attempt may take.
TEST_F(TlsTest, SlowHandshakeStillConnects) {
  ServerProcess server(TlsFlags());
  ASSERT_TRUE(server.started()) << server.Log();
  SlowProxy proxy(std::stoi(Port(server)), std::chrono::milliseconds(1000));
  ASSERT_GT(proxy.port(), 0);
  EXPECT_EQ(Health("localhost:" + std::to_string(proxy.port()), dir_.path(),
                   /*tls=*/true, false),
            "SERVING");
}

TEST(TlsConfigTest, HalfAConfigurationIsRefusedAtStartUp) {
  TempDir dir;
  ServerProcess server({"--tls_cert=" + dir.path() + "/missing.pem"});
  EXPECT_FALSE(server.started());
  EXPECT_NE(server.Log().find("TLS needs both --tls_cert and --tls_key"),
            std::string::npos)
      << server.Log();
}

// The built-in backbone computes in fp32 only: bf16 is refused at start-up
// naming the flag, and auto chooses fp32.
TEST(PrecisionConfigTest, BuiltinBackboneRefusesBf16) {
  ServerProcess bf16({"--precision=bf16"});
  EXPECT_FALSE(bf16.started());
  EXPECT_NE(bf16.Log().find("--precision=bf16: the built-in backbone "
                            "computes in fp32"),
            std::string::npos)
      << bf16.Log();
  ServerProcess automatic({"--precision=auto"});
  EXPECT_TRUE(automatic.started()) << automatic.Log();
  EXPECT_NE(automatic.Log().find("builtin in fp32"), std::string::npos)
      << automatic.Log();
}

}  // namespace
}  // namespace primaps
