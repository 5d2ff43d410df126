// Writes a few synthetic photographs (sky, ground, textured objects) as PNG
// files, so that the quick start has images to label without any download.
//
//   primaps-make-samples --out=DIR [--count=N]
#include <cmath>
#include <cstdio>
#include <random>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "base/file_util.h"
#include "engine/image/label_image.h"

ABSL_FLAG(std::string, out, "", "Output directory (must exist).");
ABSL_FLAG(int32_t, count, 4, "How many images.");

namespace {

primaps::RgbImage Scene(uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  const int w = 480, h = 360;
  primaps::RgbImage image{w, h, std::vector<uint8_t>(w * h * 3)};
  const float horizon = h * (0.35f + 0.2f * u(rng));
  const float cx = w * (0.25f + 0.5f * u(rng)),
              cy = horizon + (h - horizon) * 0.5f, r = 50 + 40 * u(rng);
  const float bx = w * u(rng) * 0.5f, bw = 80 + 60 * u(rng);
  const float hue = u(rng);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      float rgb[3];
      const float noise = (u(rng) - 0.5f) * 30.f;
      if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <
          r * r) {  // a round object
        const float stripes = std::sin(x * 0.3f) * 25.f;
        rgb[0] = 200 + stripes + noise;
        rgb[1] = 80 + 60 * hue + noise;
        rgb[2] = 40 + noise;
      } else if (x > bx && x < bx + bw && y > horizon - 120 &&
                 y < horizon + 40) {  // a building
        const bool window = (x / 12) % 2 == 0 && (y / 16) % 2 == 0;
        rgb[0] = rgb[1] = rgb[2] = window ? 60.f : 150.f + noise * 0.3f;
      } else if (y < horizon) {  // sky: smooth gradient
        rgb[0] = 110 + 60 * y / horizon;
        rgb[1] = 150 + 50 * y / horizon;
        rgb[2] = 235;
      } else {  // ground: green, textured
        rgb[0] = 70 + noise;
        rgb[1] = 130 + 2 * noise;
        rgb[2] = 50 + noise;
      }
      for (int c = 0; c < 3; ++c) {
        image.pixels[(y * w + x) * 3 + c] =
            static_cast<uint8_t>(std::fmin(std::fmax(rgb[c], 0.f), 255.f));
      }
    }
  }
  return image;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "primaps-make-samples: --out is required\n");
    return 2;
  }
  for (int i = 0; i < absl::GetFlag(FLAGS_count); ++i) {
    auto png = primaps::EncodeRgbPng(Scene(static_cast<uint32_t>(i + 1)));
    const std::string path = absl::StrCat(out, "/sample_", i, ".png");
    if (!png.ok() || !primaps::WriteFileAtomically(path, *png).ok()) {
      std::fprintf(stderr, "primaps-make-samples: cannot write %s\n",
                   path.c_str());
      return 1;
    }
  }
  std::printf("wrote %d sample images to %s\n", absl::GetFlag(FLAGS_count),
              out.c_str());
  return 0;
}
