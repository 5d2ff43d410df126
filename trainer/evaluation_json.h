// Reading back the trainer's evaluation records (a metrics.jsonl line,
// best.json, a published version's evaluation.json): files a person or an
// older build may have written, so every field is checked before use.
#ifndef PRIMAPS_TRAINER_EVALUATION_JSON_H_
#define PRIMAPS_TRAINER_EVALUATION_JSON_H_

#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/statusor.h"

namespace primaps {

// theta_M's mIoU (`theta_m.miou`) of an evaluation record. INVALID_ARGUMENT
// naming `what` (e.g. the file's path) and the field when it is not JSON,
// or the field is missing or not a number.
absl::StatusOr<double> ThetaMMiou(const nlohmann::json& evaluation,
                                  const std::string& what);
absl::StatusOr<double> ThetaMMiou(const std::string& text,
                                  const std::string& what);

}  // namespace primaps

#endif  // PRIMAPS_TRAINER_EVALUATION_JSON_H_
