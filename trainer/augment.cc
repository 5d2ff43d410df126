#include "trainer/augment.h"

#include <algorithm>
#include <cmath>

#include "engine/image/preprocess.h"

namespace primaps {
namespace {

constexpr int kBlurKernel = 21;

size_t Index(const FloatImage& im, int c, int y, int x) {
  return (static_cast<size_t>(c) * im.height + y) * im.width + x;
}

// torch's "reflect" padding index (the edge is not repeated), folded as
// often as needed.
int Reflect(int i, int n) {
  if (n == 1) return 0;
  const int period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

// torchvision's gaussian_blur on a tensor: a normalized Gaussian of 21 taps
// at -10..10, reflect padding. torchvision convolves with the 21x21 outer
// product; here it is applied as two passes, which differs in rounding only
// (about 1e-7 relative).
FloatImage GaussianBlur(const FloatImage& in, float sigma) {
  float kernel[kBlurKernel];
  float sum = 0.f;
  for (int i = 0; i < kBlurKernel; ++i) {
    const float x = static_cast<float>(i - kBlurKernel / 2) / sigma;
    kernel[i] = std::exp(-0.5f * x * x);
    sum += kernel[i];
  }
  for (float& k : kernel) k /= sum;
  const int half = kBlurKernel / 2;
  FloatImage rows = in, out = in;
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < in.height; ++y) {
      for (int x = 0; x < in.width; ++x) {
        float s = 0.f;
        for (int k = 0; k < kBlurKernel; ++k)
          s += kernel[k] *
               in.data[Index(in, c, y, Reflect(x + k - half, in.width))];
        rows.data[Index(in, c, y, x)] = s;
      }
    }
    for (int y = 0; y < in.height; ++y) {
      for (int x = 0; x < in.width; ++x) {
        float s = 0.f;
        for (int k = 0; k < kBlurKernel; ++k)
          s += kernel[k] *
               rows.data[Index(in, c, Reflect(y + k - half, in.height), x)];
        out.data[Index(in, c, y, x)] = s;
      }
    }
  }
  return out;
}

// rgb_to_grayscale: 0.2989 r + 0.587 g + 0.114 b, per pixel.
std::vector<float> Gray(const FloatImage& im) {
  const size_t plane = static_cast<size_t>(im.height) * im.width;
  std::vector<float> gray(plane);
  for (size_t i = 0; i < plane; ++i) {
    gray[i] = 0.2989f * im.data[i] + 0.587f * im.data[plane + i] +
              0.114f * im.data[2 * plane + i];
  }
  return gray;
}

// torchvision's _blend: ratio * a + (1 - ratio) * b, clamped to [0, 1].
float Blend(float a, float b, float ratio) {
  return std::clamp(ratio * a + (1.f - ratio) * b, 0.f, 1.f);
}

void AdjustBrightness(FloatImage* im, float factor) {
  for (float& v : im->data) v = Blend(v, 0.f, factor);
}

void AdjustContrast(FloatImage* im, float factor) {
  const std::vector<float> gray = Gray(*im);
  double sum = 0;  // torch.mean over the grey image
  for (float g : gray) sum += g;
  const float mean = static_cast<float>(sum / gray.size());
  for (float& v : im->data) v = Blend(v, mean, factor);
}

void AdjustSaturation(FloatImage* im, float factor) {
  const std::vector<float> gray = Gray(*im);
  const size_t plane = gray.size();
  for (int c = 0; c < 3; ++c)
    for (size_t i = 0; i < plane; ++i)
      im->data[c * plane + i] = Blend(im->data[c * plane + i], gray[i], factor);
}

// torchvision's _rgb2hsv, hue shift (h + factor) mod 1, _hsv2rgb, per pixel,
// in the same float operations (no clamp of the input).
void AdjustHue(FloatImage* im, float factor) {
  const size_t plane = static_cast<size_t>(im->height) * im->width;
  for (size_t i = 0; i < plane; ++i) {
    const float r = im->data[i], g = im->data[plane + i],
                b = im->data[2 * plane + i];
    const float maxc = std::max({r, g, b}), minc = std::min({r, g, b});
    const bool eqc = maxc == minc;
    const float cr = maxc - minc;
    const float s = cr / (eqc ? 1.f : maxc);
    const float divisor = eqc ? 1.f : cr;
    const float rc = (maxc - r) / divisor, gc = (maxc - g) / divisor,
                bc = (maxc - b) / divisor;
    const float hr = maxc == r ? bc - gc : 0.f;
    const float hg = (maxc == g && maxc != r) ? 2.f + rc - bc : 0.f;
    const float hb = (maxc != g && maxc != r) ? 4.f + gc - rc : 0.f;
    float h = std::fmod((hr + hg + hb) / 6.f + 1.f, 1.f);
    // torch's % on floats: the remainder takes the divisor's sign.
    h = h + factor;
    h = h - std::floor(h);
    const float v = maxc;
    const float sector = std::floor(h * 6.f);
    const float f = h * 6.f - sector;
    int k = static_cast<int>(sector) % 6;
    if (k < 0) k += 6;
    const float p = std::clamp(v * (1.f - s), 0.f, 1.f);
    const float q = std::clamp(v * (1.f - s * f), 0.f, 1.f);
    const float t = std::clamp(v * (1.f - s * (1.f - f)), 0.f, 1.f);
    const float rgb[6][3] = {{v, t, p}, {q, v, p}, {p, v, t},
                             {p, q, v}, {t, p, v}, {v, p, q}};
    im->data[i] = rgb[k][0];
    im->data[plane + i] = rgb[k][1];
    im->data[2 * plane + i] = rgb[k][2];
  }
}

}  // namespace

StudentDraws DrawStudent(std::mt19937* rng) {
  std::uniform_real_distribution<float> u(0.f, 1.f);
  StudentDraws d;
  d.flip = u(*rng) < 0.5f;
  d.sigma = 0.1f + 1.9f * u(*rng);
  d.jitter_branch = u(*rng) < 0.5f;
  d.jitter = u(*rng) < 0.3f;
  std::shuffle(d.order.begin(), d.order.end(), *rng);
  d.brightness = 0.9f + 0.2f * u(*rng);
  d.contrast = 0.9f + 0.2f * u(*rng);
  d.saturation = 0.9f + 0.2f * u(*rng);
  d.hue = -0.1f + 0.2f * u(*rng);
  d.grayscale = u(*rng) < 0.1f;
  return d;
}

FloatImage Normalize(const RgbImage& image) {
  FloatImage out{image.height, image.width,
                 std::vector<float>(image.pixels.size())};
  const size_t plane = static_cast<size_t>(image.height) * image.width;
  for (size_t i = 0; i < plane; ++i) {
    for (int c = 0; c < 3; ++c) {
      out.data[c * plane + i] =
          (static_cast<float>(image.pixels[3 * i + c]) / 255.f -
           kImageNetMean[c]) /
          kImageNetStd[c];
    }
  }
  return out;
}

FloatImage StudentAugment(const FloatImage& image, const StudentDraws& d) {
  FloatImage out = GaussianBlur(image, d.sigma);
  if (d.jitter_branch) {
    if (!d.jitter) return out;
    for (int op : d.order) {
      switch (op) {
        case 0:
          AdjustBrightness(&out, d.brightness);
          break;
        case 1:
          AdjustContrast(&out, d.contrast);
          break;
        case 2:
          AdjustSaturation(&out, d.saturation);
          break;
        case 3:
          AdjustHue(&out, d.hue);
          break;
      }
    }
  } else if (d.grayscale) {
    const std::vector<float> gray = Gray(out);
    const size_t plane = gray.size();
    for (int c = 0; c < 3; ++c)
      std::copy(gray.begin(), gray.end(), out.data.begin() + c * plane);
  }
  return out;
}

LabelMap FlipHorizontal(const LabelMap& labels) {
  LabelMap out = labels;
  for (int y = 0; y < labels.height; ++y) {
    std::reverse(
        out.labels.begin() + static_cast<size_t>(y) * labels.width,
        out.labels.begin() + static_cast<size_t>(y + 1) * labels.width);
  }
  return out;
}

RgbImage FlipHorizontal(const RgbImage& image) {
  RgbImage out = image;
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      const size_t src = (static_cast<size_t>(y) * image.width + x) * 3;
      const size_t dst =
          (static_cast<size_t>(y) * image.width + image.width - 1 - x) * 3;
      std::copy(&image.pixels[src], &image.pixels[src] + 3, &out.pixels[dst]);
    }
  }
  return out;
}

}  // namespace primaps
