#include "trainer/evaluation_json.h"

#include "absl/strings/str_cat.h"

namespace primaps {

absl::StatusOr<double> ThetaMMiou(const nlohmann::json& evaluation,
                                  const std::string& what) {
  if (!evaluation.is_object() || !evaluation.contains("theta_m") ||
      !evaluation["theta_m"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": no \"theta_m\" object; not an evaluation"));
  }
  const nlohmann::json& theta_m = evaluation["theta_m"];
  if (!theta_m.contains("miou") || !theta_m["miou"].is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": theta_m.miou is missing or not a number"));
  }
  return theta_m["miou"].get<double>();
}

absl::StatusOr<double> ThetaMMiou(const std::string& text,
                                  const std::string& what) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not valid JSON"));
  }
  return ThetaMMiou(j, what);
}

}  // namespace primaps
