#include "client/label_call.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/image/image_decode.h"
#include "engine/image/label_image.h"
#include "engine/image/preprocess.h"

namespace primaps {
namespace {

LabelMap FromProto(const v1::LabelMap& m) {
  return LabelMap{static_cast<int>(m.width()), static_cast<int>(m.height()),
                  std::vector<uint8_t>(m.labels().begin(), m.labels().end())};
}

}  // namespace

absl::StatusOr<LabelMode> ParseLabelMode(absl::string_view name,
                                         absl::string_view flag) {
  if (name == "propose") return LabelMode::kPropose;
  if (name == "pseudo") return LabelMode::kPseudo;
  if (name == "segment") return LabelMode::kSegment;
  return absl::InvalidArgumentError(absl::StrCat(
      flag, " is \"", name, "\", expected propose, pseudo or segment"));
}

const char* LabelModeName(LabelMode mode) {
  switch (mode) {
    case LabelMode::kPropose:
      return "propose";
    case LabelMode::kPseudo:
      return "pseudo";
    case LabelMode::kSegment:
      return "segment";
  }
  return "?";
}

absl::StatusOr<LabelCallResult> CallLabels(PrimapsClient* client,
                                           LabelMode mode,
                                           const v1::ImageRequest& request) {
  LabelCallResult out;
  switch (mode) {
    case LabelMode::kPropose: {
      ASSIGN_OR_RETURN(v1::MaskProposals r, client->ProposeMasks(request));
      out.labels = FromProto(r.masks());
      out.model = r.model();
      out.geometry = r.geometry();
      out.masks = static_cast<int>(r.mask_count());
      break;
    }
    case LabelMode::kPseudo: {
      ASSIGN_OR_RETURN(v1::PseudoLabelResponse r, client->PseudoLabel(request));
      out.labels = FromProto(r.labels());
      out.model = r.model();
      out.geometry = r.geometry();
      out.masks = static_cast<int>(r.mask_count());
      break;
    }
    case LabelMode::kSegment: {
      ASSIGN_OR_RETURN(v1::Segmentation r, client->Segment(request));
      out.labels = FromProto(r.labels());
      out.model = r.model();
      out.geometry = r.geometry();
      out.classes = static_cast<int>(r.classes());
      break;
    }
  }
  return out;
}

absl::StatusOr<RgbImage> ImageUnderLabels(const RgbImage& decoded,
                                          const LabelCallResult& result) {
  const v1::LabelGeometry& g = result.geometry;
  const int w = result.labels.width, h = result.labels.height;
  if (g.output_size() == v1::OUTPUT_SIZE_ORIGINAL) {
    if (decoded.width != w || decoded.height != h) {
      return absl::FailedPreconditionError(
          absl::StrCat("the labels are ", w, "x", h, " but the image is ",
                       decoded.width, "x", decoded.height));
    }
    return decoded;
  }
  if (g.resize() == 0) {
    return absl::FailedPreconditionError(
        "the response has no geometry (a server older than output_size?)");
  }
  const RgbImage content = ResizeAndCropAntialias(
      decoded, static_cast<int>(g.resize()),
      g.crop() == v1::CROP_MODE_FULL ? CropMode::kFull : CropMode::kCenter);
  if (content.width > w || content.height > h) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the labels are ", w, "x", h, " but the processed image is ",
        content.width, "x", content.height));
  }
  // The server pads the normalized image with zeros: black is close enough
  // for a picture.
  RgbImage out{w, h, std::vector<uint8_t>(static_cast<size_t>(w) * h * 3, 0)};
  for (int y = 0; y < content.height; ++y) {
    std::copy_n(&content.pixels[static_cast<size_t>(y) * content.width * 3],
                content.width * 3, &out.pixels[static_cast<size_t>(y) * w * 3]);
  }
  return out;
}

absl::StatusOr<std::string> OverlayPng(const std::string& image_bytes,
                                       const LabelCallResult& result,
                                       LabelMode mode) {
  ASSIGN_OR_RETURN(const RgbImage decoded, DecodeImage(image_bytes));
  ASSIGN_OR_RETURN(const RgbImage shown, ImageUnderLabels(decoded, result));
  ASSIGN_OR_RETURN(const RgbImage blended, RenderOverlay(shown, result.labels));
  const bool classes =
      mode == LabelMode::kSegment ||
      (mode == LabelMode::kPseudo && result.model.classes() > 0);
  ASSIGN_OR_RETURN(
      const RgbImage legend,
      AddLegend(blended, result.labels, [&](uint8_t label) -> std::string {
        if (label == kIgnoreLabel) return "no label (255)";
        if (mode == LabelMode::kPropose && label == 0) return "background";
        return absl::StrCat(classes ? "class " : "mask ", label);
      }));
  return EncodeRgbPng(legend);
}

}  // namespace primaps
