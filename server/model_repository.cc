#include "server/model_repository.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/file_util.h"
#include "base/status_macros.h"

namespace primaps {
namespace fs = std::filesystem;
namespace {

constexpr char kHeadFile[] = "head.safetensors";
// Instead of kHeadFile: the reference's train.py checkpoint, whose heads are
// served (engine/reference_checkpoint.h).
constexpr char kReferenceHeadFile[] = "head.ckpt";
constexpr char kEvaluationFile[] = "evaluation.json";
constexpr char kPolicyFile[] = "POLICY";
constexpr char kIncomingPrefix[] = ".incoming-";
// Heads are small (a K x D matrix and a bias); this bounds a corrupt file.
constexpr int64_t kMaxHeadBytes = int64_t{1} << 30;

// The version a directory entry names: a plain decimal number >= 1.
std::optional<uint64_t> VersionOf(const std::string& name) {
  if (name.empty() || name.size() > 19 || name[0] == '0') return std::nullopt;
  for (const char c : name) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)))
      return std::nullopt;
  }
  uint64_t version = 0;
  if (!absl::SimpleAtoi(name, &version)) return std::nullopt;
  return version;
}

absl::Status FsyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open ", path, " to sync"));
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) return absl::InternalError(absl::StrCat("cannot fsync ", path));
  return absl::OkStatus();
}

class DirectorySource final : public ModelSource {
 public:
  explicit DirectorySource(std::string dir) : dir_(std::move(dir)) {}

  absl::StatusOr<std::vector<uint64_t>> ListVersions() const override {
    std::error_code ec;
    std::vector<uint64_t> versions;
    for (auto it = fs::directory_iterator(dir_, ec);
         !ec && it != fs::directory_iterator(); it.increment(ec)) {
      const std::optional<uint64_t> version =
          VersionOf(it->path().filename().string());
      if (version && it->is_directory(ec)) versions.push_back(*version);
    }
    if (ec) {
      return absl::UnavailableError(absl::StrCat(
          "cannot list the model repository ", dir_, ": ", ec.message()));
    }
    std::sort(versions.begin(), versions.end());
    return versions;
  }

  absl::StatusOr<std::string> ReadHead(uint64_t version) const override {
    const std::string dir = Describe(version);
    std::error_code ec;
    if (!fs::exists(absl::StrCat(dir, "/", kHeadFile), ec) &&
        fs::exists(absl::StrCat(dir, "/", kReferenceHeadFile), ec)) {
      return ReadFile(absl::StrCat(dir, "/", kReferenceHeadFile),
                      kMaxHeadBytes);
    }
    return ReadFile(absl::StrCat(dir, "/", kHeadFile), kMaxHeadBytes);
  }

  absl::StatusOr<std::string> ReadPolicy() const override {
    const std::string path = absl::StrCat(dir_, "/", kPolicyFile);
    std::error_code ec;
    if (!fs::exists(path, ec)) return std::string();
    ASSIGN_OR_RETURN(const std::string text, ReadFile(path, 1 << 10));
    return std::string(absl::StripAsciiWhitespace(text));
  }

  std::string Describe(uint64_t version) const override {
    return absl::StrCat(dir_, "/", version);
  }

 private:
  const std::string dir_;
};

}  // namespace

std::unique_ptr<ModelSource> DirectoryModelSource(std::string dir) {
  return std::make_unique<DirectorySource>(std::move(dir));
}

absl::StatusOr<uint64_t> PublishToDirectory(const std::string& dir,
                                            absl::string_view head,
                                            absl::string_view evaluation_json) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot create the model repository ", dir, ": ", ec.message()));
  }
  // What an earlier writer killed half-way left behind.
  for (auto it = fs::directory_iterator(dir, ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (absl::StartsWith(it->path().filename().string(), kIncomingPrefix))
      fs::remove_all(it->path(), ec);
  }
  ASSIGN_OR_RETURN(const std::vector<uint64_t> versions,
                   DirectoryModelSource(dir)->ListVersions());
  const uint64_t version = versions.empty() ? 1 : versions.back() + 1;
  const std::string incoming =
      absl::StrCat(dir, "/", kIncomingPrefix, version, "-", ::getpid());
  fs::create_directory(incoming, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", incoming, ": ", ec.message()));
  }
  RETURN_IF_ERROR(
      WriteFileAtomically(absl::StrCat(incoming, "/", kHeadFile), head));
  if (!evaluation_json.empty()) {
    RETURN_IF_ERROR(WriteFileAtomically(
        absl::StrCat(incoming, "/", kEvaluationFile), evaluation_json));
  }
  RETURN_IF_ERROR(FsyncPath(incoming, O_RDONLY | O_DIRECTORY));
  const std::string final_path = absl::StrCat(dir, "/", version);
  fs::rename(incoming, final_path, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot rename ", incoming, " to ",
                                            final_path, ": ", ec.message()));
  }
  RETURN_IF_ERROR(FsyncPath(dir, O_RDONLY | O_DIRECTORY));
  return version;
}

absl::StatusOr<VersionPolicy> ParseVersionPolicy(absl::string_view text) {
  VersionPolicy policy;
  if (text == "latest") return policy;
  absl::string_view rest = text;
  if (absl::ConsumePrefix(&rest, "pinned:") &&
      absl::SimpleAtoi(rest, &policy.pinned) && policy.pinned >= 1) {
    policy.kind = VersionPolicy::Kind::kPinned;
    return policy;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "version policy is \"", text, "\", expected latest or pinned:V"));
}

std::optional<uint64_t> ChooseVersion(const std::vector<uint64_t>& complete,
                                      const VersionPolicy& policy,
                                      const std::set<uint64_t>& refused) {
  if (policy.kind == VersionPolicy::Kind::kPinned) {
    const bool present =
        std::binary_search(complete.begin(), complete.end(), policy.pinned);
    if (present && refused.count(policy.pinned) == 0) return policy.pinned;
    return std::nullopt;
  }
  for (auto it = complete.rbegin(); it != complete.rend(); ++it) {
    if (refused.count(*it) == 0) return *it;
  }
  return std::nullopt;
}

}  // namespace primaps
