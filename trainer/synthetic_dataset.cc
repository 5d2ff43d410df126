#include "trainer/synthetic_dataset.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_util.h"
#include "base/status_macros.h"
#include "engine/image/label_image.h"

namespace primaps {
namespace {

// Class c's look: a base colour spread around the hue circle, and a stripe
// texture with its own orientation, period and contrast.
struct ClassLook {
  float rgb[3];
  float angle, period, contrast, noise;
};

ClassLook Look(int c, int classes) {
  ClassLook look;
  const float hue = 6.28318f * c / classes;
  for (int k = 0; k < 3; ++k)
    look.rgb[k] = 128 + 80 * std::cos(hue + k * 2.094f);
  look.angle = 3.14159f * ((c * 37) % 8) / 8.f;
  look.period = 4.f + 3.f * (c % 4);
  look.contrast = 10.f + 12.f * ((c * 5) % 3);
  look.noise = 6.f + 4.f * (c % 3);
  return look;
}

}  // namespace

void SyntheticImage(const SyntheticDatasetOptions& o, int index,
                    RgbImage* image, LabelMap* labels) {
  std::mt19937 rng(o.seed * 1000003u + static_cast<uint32_t>(index));
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> cx(o.cells), cy(o.cells);
  std::vector<int> cls(o.cells);
  for (int i = 0; i < o.cells; ++i) {
    cx[i] = u(rng) * o.width;
    cy[i] = u(rng) * o.height;
    // Every class appears in most images: cycle, then shuffle.
    cls[i] = i % o.classes;
  }
  std::shuffle(cls.begin(), cls.end(), rng);
  const float brightness = 0.85f + 0.3f * u(rng);  // per-image lighting
  *image = RgbImage{
      o.width, o.height,
      std::vector<uint8_t>(static_cast<size_t>(o.width) * o.height * 3)};
  *labels =
      LabelMap{o.width, o.height,
               std::vector<uint8_t>(static_cast<size_t>(o.width) * o.height)};
  for (int y = 0; y < o.height; ++y) {
    for (int x = 0; x < o.width; ++x) {
      int best = 0;
      float best_d = 1e30f;
      for (int i = 0; i < o.cells; ++i) {
        const float d = (x - cx[i]) * (x - cx[i]) + (y - cy[i]) * (y - cy[i]);
        if (d < best_d) {
          best_d = d;
          best = i;
        }
      }
      const int c = cls[best];
      const ClassLook look = Look(c, o.classes);
      const float along = x * std::cos(look.angle) + y * std::sin(look.angle);
      const float stripe =
          look.contrast * std::sin(6.28318f * along / look.period);
      for (int k = 0; k < 3; ++k) {
        const float v =
            (look.rgb[k] + stripe + look.noise * normal(rng)) * brightness;
        image->pixels[(static_cast<size_t>(y) * o.width + x) * 3 + k] =
            static_cast<uint8_t>(std::fmin(std::fmax(v, 0.f), 255.f));
      }
      labels->labels[static_cast<size_t>(y) * o.width + x] =
          static_cast<uint8_t>(c);
    }
  }
}

absl::Status WriteSyntheticCityscapes(const std::string& root,
                                      const std::string& split,
                                      const SyntheticDatasetOptions& options) {
  if (options.classes < 1 || options.classes > 27 || options.images < 1 ||
      options.cells < 1) {
    return absl::InvalidArgumentError(
        "a synthetic Cityscapes split needs 1..27 classes, >= 1 image and >= "
        "1 cell");
  }
  const char* const cities[2] = {"aachen", "bremen"};
  for (int i = 0; i < options.images; ++i) {
    const std::string city = cities[i % 2];
    const std::string stem = absl::StrFormat("%s_%06d_000019", city, i);
    const std::string images =
        absl::StrCat(root, "/leftImg8bit/", split, "/", city);
    const std::string labels = absl::StrCat(root, "/gtFine/", split, "/", city);
    std::error_code ec;
    std::filesystem::create_directories(images, ec);
    std::filesystem::create_directories(labels, ec);
    if (ec) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create ", images, ": ", ec.message()));
    }
    RgbImage image;
    LabelMap classes;
    SyntheticImage(options, i, &image, &classes);
    for (uint8_t& id : classes.labels) id = static_cast<uint8_t>(id + 7);
    ASSIGN_OR_RETURN(const std::string image_png, EncodeRgbPng(image));
    ASSIGN_OR_RETURN(const std::string label_png, EncodeLabelPng(classes));
    RETURN_IF_ERROR(WriteFileAtomically(
        absl::StrCat(images, "/", stem, "_leftImg8bit.png"), image_png));
    RETURN_IF_ERROR(WriteFileAtomically(
        absl::StrCat(labels, "/", stem, "_gtFine_labelIds.png"), label_png));
  }
  return absl::OkStatus();
}

absl::Status WriteSyntheticDataset(const std::string& dir,
                                   const SyntheticDatasetOptions& options) {
  if (options.classes < 1 || options.classes > 254 || options.images < 1 ||
      options.cells < 1) {
    return absl::InvalidArgumentError(
        "synthetic dataset needs 1..254 classes, >= 1 image and >= 1 cell");
  }
  std::error_code ec;
  std::filesystem::create_directories(dir + "/images", ec);
  std::filesystem::create_directories(dir + "/labels", ec);
  if (ec)
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", dir, ": ", ec.message()));
  for (int i = 0; i < options.images; ++i) {
    RgbImage image;
    LabelMap labels;
    SyntheticImage(options, i, &image, &labels);
    const std::string name = absl::StrFormat("%05d.png", i);
    ASSIGN_OR_RETURN(const std::string image_png, EncodeRgbPng(image));
    ASSIGN_OR_RETURN(const std::string label_png, EncodeLabelPng(labels));
    RETURN_IF_ERROR(WriteFileAtomically(dir + "/images/" + name, image_png));
    RETURN_IF_ERROR(WriteFileAtomically(dir + "/labels/" + name, label_png));
  }
  return absl::OkStatus();
}

}  // namespace primaps
