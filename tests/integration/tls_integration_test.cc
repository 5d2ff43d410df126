// TLS and mTLS with certificates made by the test (Debian's openssl).
#include <gtest/gtest.h>

#include <cstdlib>

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

TEST(TlsTest, TlsAndMutualTls) {
  if (std::system("command -v openssl > /dev/null") != 0)
    GTEST_SKIP() << "openssl not installed";
  TempDir dir;
  ASSERT_TRUE(MakeCertificates(dir.path()));
  {
    ServerProcess server({"--tls_cert=" + dir.path() + "/server.pem",
                          "--tls_key=" + dir.path() + "/server.key"});
    ASSERT_TRUE(server.started()) << server.Log();
    const std::string address =
        "localhost:" + server.address().substr(server.address().rfind(':') + 1);
    EXPECT_EQ(Health(address, dir.path(), /*tls=*/true, false), "SERVING");
    EXPECT_NE(Health(address, dir.path(), /*tls=*/false, false),
              "SERVING");  // plaintext refused
  }
  {
    ServerProcess server({"--tls_cert=" + dir.path() + "/server.pem",
                          "--tls_key=" + dir.path() + "/server.key",
                          "--tls_client_ca=" + dir.path() + "/ca.pem"});
    ASSERT_TRUE(server.started()) << server.Log();
    const std::string address =
        "localhost:" + server.address().substr(server.address().rfind(':') + 1);
    EXPECT_EQ(Health(address, dir.path(), true, /*client_cert=*/true),
              "SERVING");
    EXPECT_NE(Health(address, dir.path(), true, /*client_cert=*/false),
              "SERVING");  // no client cert
  }
}

// A handshake that takes a second (a loaded or distant server) still
// connects: the client must not cap how long a connection attempt may take.
TEST(TlsTest, SlowHandshakeStillConnects) {
  if (std::system("command -v openssl > /dev/null") != 0)
    GTEST_SKIP() << "openssl not installed";
  TempDir dir;
  ASSERT_TRUE(MakeCertificates(dir.path()));
  ServerProcess server({"--tls_cert=" + dir.path() + "/server.pem",
                        "--tls_key=" + dir.path() + "/server.key"});
  ASSERT_TRUE(server.started()) << server.Log();
  const int server_port =
      std::stoi(server.address().substr(server.address().rfind(':') + 1));
  SlowProxy proxy(server_port, std::chrono::milliseconds(1000));
  ASSERT_GT(proxy.port(), 0);
  EXPECT_EQ(Health("localhost:" + std::to_string(proxy.port()), dir.path(),
                   /*tls=*/true, false),
            "SERVING");
}

TEST(TlsTest, HalfAConfigurationIsRefusedAtStartUp) {
  TempDir dir;
  ServerProcess server({"--tls_cert=" + dir.path() + "/missing.pem"});
  EXPECT_FALSE(server.started());
  EXPECT_NE(server.Log().find("TLS needs both --tls_cert and --tls_key"),
            std::string::npos)
      << server.Log();
}

}  // namespace
}  // namespace primaps
