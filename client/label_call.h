// One label-map call by mode (ProposeMasks, PseudoLabel or Segment), and
// the overlay that draws its result on the caller's image: shared by the
// one-shot commands, the batch job and the load generator.
#ifndef PRIMAPS_CLIENT_LABEL_CALL_H_
#define PRIMAPS_CLIENT_LABEL_CALL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/primaps_client.h"
#include "engine/image/image.h"

namespace primaps {

enum class LabelMode { kPropose, kPseudo, kSegment };

// "propose", "pseudo" or "segment"; `flag` names the flag in the error.
absl::StatusOr<LabelMode> ParseLabelMode(absl::string_view name,
                                         absl::string_view flag);
const char* LabelModeName(LabelMode mode);

struct LabelCallResult {
  // Class ids (pseudo, segment) or mask ids (propose).
  LabelMap labels;
  v1::ModelInfo model;
  v1::LabelGeometry geometry;
  int masks = 0;    // propose, pseudo
  int classes = 0;  // segment
};

absl::StatusOr<LabelCallResult> CallLabels(PrimapsClient* client,
                                           LabelMode mode,
                                           const v1::ImageRequest& request);

// The image the labels describe, as 8-bit RGB of the labels' size: the
// decoded image itself for original-size output; for processed output, the
// resize and crop the response's geometry names (Pillow's antialiased
// filter), padded at the bottom and right as the server pads.
absl::StatusOr<RgbImage> ImageUnderLabels(const RgbImage& decoded,
                                          const LabelCallResult& result);

// A PNG of the labels blended on ImageUnderLabels, with a legend of the
// labels present (masks, or classes when the model has a head).
absl::StatusOr<std::string> OverlayPng(const std::string& image_bytes,
                                       const LabelCallResult& result,
                                       LabelMode mode);

}  // namespace primaps

#endif  // PRIMAPS_CLIENT_LABEL_CALL_H_
