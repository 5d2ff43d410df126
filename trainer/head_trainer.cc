#include "trainer/head_trainer.h"

#include <torch/torch.h>

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/checkpoint/safetensors.h"
#include "trainer/em_schedule.h"

namespace primaps {
namespace {

namespace F = torch::nn::functional;

// LibTorch reports its errors (shapes, allocation) as exceptions: the
// public methods turn them into a Status, so that none reaches a caller.
template <typename Body>
auto CatchTorchErrors(const char* what, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(
        what, " failed in LibTorch: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, " failed: ", e.what()));
  }
}

torch::Tensor FromRecord(const TensorRecord& r) {
  return torch::from_blob(const_cast<char*>(r.data.data()), r.shape,
                          torch::kFloat)
      .clone();
}

TensorRecord ToRecord(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kFloat).contiguous();
  TensorRecord r;
  r.shape = c.sizes().vec();
  r.data.assign(reinterpret_cast<const char*>(c.data_ptr<float>()),
                c.numel() * 4);
  return r;
}

std::vector<float> ToVector(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(),
                            c.data_ptr<float>() + c.numel());
}

torch::Tensor Features(const FeatureMap& f) {
  return torch::from_blob(const_cast<float*>(f.data.data()),
                          {f.dim, f.height, f.width}, torch::kFloat);
}

// Weight-normalized 1x1 convolution weights: g * v / |v|.
torch::Tensor Weights(const torch::Tensor& v, const torch::Tensor& g) {
  return g.unsqueeze(1) * v / v.norm(2, 1, /*keepdim=*/true);
}

// The focal loss as the reference normalizes it (DESIGN.md): class weights
// (1 - mean softmax confidence of the class over all pixels of the batch,
// ignored ones included)^gamma, not differentiated; the weighted cross
// entropy of the valid pixels summed and divided by the number of all
// pixels (cross_entropy with reduction "none", then mean).
torch::Tensor FocalLoss(const torch::Tensor& logits,
                        const torch::Tensor& targets, double gamma) {
  // logits: [N, K] or [B, K, H, W]; class dimension 1.
  std::vector<int64_t> other_dims;
  for (int64_t d = 0; d < logits.dim(); ++d) {
    if (d != 1) other_dims.push_back(d);
  }
  torch::Tensor confidence;
  {
    torch::NoGradGuard no_grad;
    confidence = logits.softmax(1).mean(other_dims);
  }
  const torch::Tensor weights = (1 - confidence).pow(gamma);
  return F::cross_entropy(logits, targets,
                          F::CrossEntropyFuncOptions()
                              .weight(weights)
                              .ignore_index(255)
                              .reduction(torch::kNone))
      .mean();
}

// One Adam update (beta 0.9 / 0.999, eps 1e-8, as torch.optim.Adam) of
// each parameter that has a gradient, with its moments m and s; clears the
// gradients.
void AdamStep(std::initializer_list<
                  std::tuple<torch::Tensor*, torch::Tensor*, torch::Tensor*>>
                  params,
              int64_t step, double learning_rate) {
  torch::NoGradGuard no_grad;
  constexpr double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const double c1 = 1 - std::pow(b1, step), c2 = 1 - std::pow(b2, step);
  for (auto [p, m, s] : params) {
    if (!p->grad().defined()) continue;
    const torch::Tensor grad = p->grad();
    m->mul_(b1).add_(grad, 1 - b1);
    s->mul_(b2).addcmul_(grad, grad, 1 - b2);
    p->sub_(learning_rate * (*m / c1) / ((*s / c2).sqrt() + eps));
    p->mutable_grad().zero_();
  }
}

// Logits of a batch of feature maps upsampled to the targets' size:
// `weights` (K x D) and optional `bias` on the grid, then bilinear
// interpolation (the same as upsampling the features first: both linear).
torch::Tensor UpsampledLogits(const torch::Tensor& weights,
                              const torch::Tensor& bias,
                              const std::vector<TrainingSample>& batch) {
  const TrainingSample& first = batch[0];
  const int64_t b = static_cast<int64_t>(batch.size());
  const int64_t d = first.features.dim, h = first.features.height,
                w = first.features.width;
  std::vector<torch::Tensor> features;
  for (const TrainingSample& s : batch)
    features.push_back(Features(s.features).reshape({d, h * w}));
  torch::Tensor scores = weights.matmul(torch::stack(features));
  if (bias.defined()) scores = scores + bias.view({1, -1, 1});
  return F::interpolate(
      scores.reshape({b, weights.size(0), h, w}),
      F::InterpolateFuncOptions()
          .size(std::vector<int64_t>{first.target.height, first.target.width})
          .mode(torch::kBilinear)
          .align_corners(false));
}

// The targets of a batch as one [B, H, W] long tensor.
torch::Tensor StackTargets(const std::vector<TrainingSample>& batch) {
  std::vector<torch::Tensor> targets;
  for (const TrainingSample& s : batch) {
    targets.push_back(
        torch::from_blob(const_cast<uint8_t*>(s.target.labels.data()),
                         {s.target.height, s.target.width}, torch::kUInt8));
  }
  return torch::stack(targets).to(torch::kLong);
}

// A batch the batched passes can take: the trainer's feature dim, one
// feature size and one target size for all samples.
absl::Status CheckBatch(const std::vector<TrainingSample>& batch, int dim) {
  if (batch.empty()) return absl::InvalidArgumentError("empty batch");
  const TrainingSample& first = batch[0];
  for (const TrainingSample& s : batch) {
    if (s.features.dim != dim) {
      return absl::InvalidArgumentError("feature dim mismatch");
    }
    if (s.features.height != first.features.height ||
        s.features.width != first.features.width ||
        s.target.height != first.target.height ||
        s.target.width != first.target.width) {
      return absl::InvalidArgumentError("a batch needs samples of one size");
    }
  }
  return absl::OkStatus();
}

}  // namespace

struct HeadTrainer::Impl {
  HeadTrainerOptions options;
  torch::Tensor v_r, g_r, v_m, g_m;  // theta_R (trained) and theta_M (EMA)
  // Adam moments per parameter and the shared step count.
  torch::Tensor m_v, s_v, m_g, s_g;
  int64_t adam_step = 0;
  int64_t step = 0;
  int64_t ema_updates = 0;
  // The linear probe (weight K x D, bias K), its Adam moments and step.
  torch::Tensor w_l, b_l, m_wl, s_wl, m_bl, s_bl;
  int64_t linear_adam_step = 0;
  // PCA accumulators: sum of the feature vectors and of their outer
  // products, and their count.
  torch::Tensor pca_sum, pca_scatter;
  int64_t pca_count = 0;

  void EmaUpdate() {
    torch::NoGradGuard no_grad;
    ++ema_updates;
    const double d = EmaDecay(ema_updates, options.ema_max_decay);
    v_m = d * v_m + (1 - d) * v_r.detach();
    g_m = d * g_m + (1 - d) * g_r.detach();
  }

  // theta_R and theta_M from prototypes (classes x dim), gain 1.
  void SetPrototypes(const torch::Tensor& top) {
    v_r = top.clone().requires_grad_(true);
    g_r = torch::ones({options.classes}).requires_grad_(true);
    v_m = top.clone();
    g_m = torch::ones({options.classes});
    ResetAdam();
  }

  void ResetAdam() {
    m_v = torch::zeros_like(v_r);
    s_v = torch::zeros_like(v_r);
    m_g = torch::zeros_like(g_r);
    s_g = torch::zeros_like(g_r);
    adam_step = 0;
  }

  // PyTorch's Conv2d initialization: weight and bias uniform in
  // +-1/sqrt(D), here from a fixed seed; fresh Adam moments.
  void ResetLinearProbe() {
    const torch::Generator generator =
        at::detail::createCPUGenerator(/*seed_in=*/17);
    const double bound = 1.0 / std::sqrt(static_cast<double>(options.dim));
    w_l = torch::empty({options.classes, options.dim})
              .uniform_(-bound, bound, generator)
              .requires_grad_(true);
    b_l = torch::empty({options.classes})
              .uniform_(-bound, bound, generator)
              .requires_grad_(true);
    m_wl = torch::zeros_like(w_l);
    s_wl = torch::zeros_like(w_l);
    m_bl = torch::zeros_like(b_l);
    s_bl = torch::zeros_like(b_l);
    linear_adam_step = 0;
  }
};

HeadTrainer::HeadTrainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HeadTrainer::~HeadTrainer() = default;

absl::StatusOr<std::unique_ptr<HeadTrainer>> HeadTrainer::Create(
    const HeadTrainerOptions& options) {
  return CatchTorchErrors(
      "creating the head trainer",
      [&]() -> absl::StatusOr<std::unique_ptr<HeadTrainer>> {
        if (options.classes < 1 || options.classes > 254 || options.dim < 1) {
          return absl::InvalidArgumentError(
              absl::StrCat("classes is ", options.classes, " and dim ",
                           options.dim, "; need 1..254 classes and dim >= 1"));
        }
        auto impl = std::make_unique<Impl>();
        impl->options = options;
        // Until PCA initialization: a fixed, deterministic orthogonal-ish
        // start.
        impl->v_r = torch::eye(options.classes, options.dim)
                        .add_(0.01)
                        .requires_grad_(true);
        impl->g_r = torch::ones({options.classes}).requires_grad_(true);
        impl->v_m = impl->v_r.detach().clone();
        impl->g_m = impl->g_r.detach().clone();
        impl->ResetAdam();
        if (options.linear_learning_rate > 0) impl->ResetLinearProbe();
        return std::unique_ptr<HeadTrainer>(new HeadTrainer(std::move(impl)));
      });
}

absl::Status HeadTrainer::InitFromPca(const std::vector<FeatureMap>& features) {
  return CatchTorchErrors("the PCA initialization", [&]() -> absl::Status {
    if (features.empty())
      return absl::InvalidArgumentError("PCA initialization needs features");
    for (const FeatureMap& f : features) RETURN_IF_ERROR(AddPcaFeatures(f));
    return FinishPca();
  });
}

absl::Status HeadTrainer::AddPcaFeatures(const FeatureMap& f) {
  return CatchTorchErrors("the PCA initialization", [&]() -> absl::Status {
    const int d = impl_->options.dim;
    if (f.dim != d) {
      return absl::InvalidArgumentError(
          absl::StrCat("features have dim ", f.dim, ", expected ", d));
    }
    torch::NoGradGuard no_grad;
    const torch::Tensor x = Features(f).reshape({d, -1}).to(torch::kDouble);
    if (impl_->pca_count == 0) {
      impl_->pca_sum = torch::zeros({d}, torch::kDouble);
      impl_->pca_scatter = torch::zeros({d, d}, torch::kDouble);
    }
    impl_->pca_sum += x.sum(1);
    impl_->pca_scatter.addmm_(x, x.t());
    impl_->pca_count += x.size(1);
    return absl::OkStatus();
  });
}

absl::Status HeadTrainer::InitFromPrototypes(const std::vector<float>& v) {
  return CatchTorchErrors(
      "the initialization from prototypes", [&]() -> absl::Status {
        const int k = impl_->options.classes, d = impl_->options.dim;
        if (v.size() != static_cast<size_t>(k) * d) {
          return absl::InvalidArgumentError(absl::StrCat(
              "the prototypes hold ", v.size(), " values; the heads need ", k,
              " classes x ", d, " channels"));
        }
        torch::NoGradGuard no_grad;
        const torch::Tensor top =
            torch::from_blob(const_cast<float*>(v.data()), {k, d}).clone();
        impl_->SetPrototypes(top);
        return absl::OkStatus();
      });
}

absl::Status HeadTrainer::FinishPca() {
  return CatchTorchErrors("the PCA initialization", [&]() -> absl::Status {
    const int k = impl_->options.classes, d = impl_->options.dim;
    if (k > d)
      return absl::InvalidArgumentError(
          absl::StrCat(k, " classes need at most ", d, " feature dims"));
    if (impl_->pca_count == 0)
      return absl::InvalidArgumentError("PCA initialization needs features");
    torch::NoGradGuard no_grad;
    // The centered scatter matrix: sum x x^T - n mean mean^T.
    const torch::Tensor mean = impl_->pca_sum / impl_->pca_count;
    const torch::Tensor covariance =
        impl_->pca_scatter - impl_->pca_count * mean.outer(mean);
    const torch::Tensor vectors =
        std::get<1>(torch::linalg::eigh(covariance, "L"));
    impl_->pca_count = 0;
    impl_->pca_sum = impl_->pca_scatter = torch::Tensor();
    // Largest eigenvalues last: take the last K columns, largest first.
    const torch::Tensor top =
        vectors.slice(1, d - k, d).flip({1}).t().to(torch::kFloat).contiguous();
    impl_->SetPrototypes(top);
    return absl::OkStatus();
  });
}

absl::StatusOr<double> HeadTrainer::BaselineStep(
    const std::vector<FeatureMap>& features) {
  return CatchTorchErrors("a baseline step", [&]() -> absl::StatusOr<double> {
    const int d = impl_->options.dim;
    std::vector<torch::Tensor> rows;
    for (const FeatureMap& f : features)
      rows.push_back(Features(f).reshape({d, -1}).t());
    if (rows.empty())
      return absl::InvalidArgumentError("baseline step needs features");
    const torch::Tensor x =
        F::normalize(torch::cat(rows, 0), F::NormalizeFuncOptions().dim(1));
    const torch::Tensor prototypes =
        F::normalize(impl_->v_r, F::NormalizeFuncOptions().dim(1));
    const torch::Tensor loss = -std::get<0>(x.mm(prototypes.t()).max(1)).mean();
    loss.backward();
    AdamStep({{&impl_->v_r, &impl_->m_v, &impl_->s_v},
              {&impl_->g_r, &impl_->m_g, &impl_->s_g}},
             ++impl_->adam_step, impl_->options.learning_rate);
    {
      torch::NoGradGuard no_grad;
      impl_->v_m = impl_->v_r.detach().clone();
      impl_->g_m = impl_->g_r.detach().clone();
    }
    return loss.item<double>();
  });
}

absl::StatusOr<double> HeadTrainer::EmStep(
    const std::vector<TrainingSample>& batch) {
  return CatchTorchErrors("a PriMaPs-EM step", [&]() -> absl::StatusOr<double> {
    RETURN_IF_ERROR(CheckBatch(batch, impl_->options.dim));
    const torch::Tensor targets = StackTargets(batch);
    if ((targets != 255).sum().item<int64_t>() == 0) {
      ++impl_->step;  // nothing to learn from; keep the schedule moving
      if (IsEmaStep(impl_->step, impl_->options.ema_every)) impl_->EmaUpdate();
      return 0.0;
    }
    const torch::Tensor logits = UpsampledLogits(
        Weights(impl_->v_r, impl_->g_r), torch::Tensor(), batch);
    const torch::Tensor loss =
        FocalLoss(logits, targets, impl_->options.focal_gamma);
    loss.backward();
    AdamStep({{&impl_->v_r, &impl_->m_v, &impl_->s_v},
              {&impl_->g_r, &impl_->m_g, &impl_->s_g}},
             ++impl_->adam_step, impl_->options.learning_rate);
    ++impl_->step;
    if (IsEmaStep(impl_->step, impl_->options.ema_every)) impl_->EmaUpdate();
    return loss.item<double>();
  });
}

absl::StatusOr<double> HeadTrainer::LinearStep(
    const std::vector<TrainingSample>& batch) {
  return CatchTorchErrors(
      "a linear probe step", [&]() -> absl::StatusOr<double> {
        if (!has_linear_probe())
          return absl::FailedPreconditionError(
              "no linear probe (learning rate 0)");
        RETURN_IF_ERROR(CheckBatch(batch, impl_->options.dim));
        const torch::Tensor logits =
            UpsampledLogits(impl_->w_l, impl_->b_l, batch);
        const torch::Tensor loss =
            F::cross_entropy(
                logits, StackTargets(batch),
                F::CrossEntropyFuncOptions().ignore_index(255).reduction(
                    torch::kNone))
                .mean();
        loss.backward();
        AdamStep({{&impl_->w_l, &impl_->m_wl, &impl_->s_wl},
                  {&impl_->b_l, &impl_->m_bl, &impl_->s_bl}},
                 ++impl_->linear_adam_step,
                 impl_->options.linear_learning_rate);
        return loss.item<double>();
      });
}

bool HeadTrainer::has_linear_probe() const {
  return impl_->options.linear_learning_rate > 0;
}

void HeadTrainer::ResetOptimizer() { impl_->ResetAdam(); }

void HeadTrainer::ResetLinearProbe() {
  if (has_linear_probe()) {
    torch::NoGradGuard no_grad;
    impl_->ResetLinearProbe();
  }
}

SegmentationHead HeadTrainer::Head() const {
  SegmentationHead head;
  head.classes = impl_->options.classes;
  head.dim = impl_->options.dim;
  head.backbone = impl_->options.backbone;
  if (impl_->options.dino_block > 0) {
    head.extra_metadata["dino_block"] = absl::StrCat(impl_->options.dino_block);
  }
  if (!impl_->options.projection_digest.empty()) {
    head.extra_metadata["projection_digest"] = impl_->options.projection_digest;
  }
  head.step = impl_->step;
  head.theta_r = {ToVector(impl_->v_r), ToVector(impl_->g_r)};
  head.theta_m = {ToVector(impl_->v_m), ToVector(impl_->g_m)};
  if (has_linear_probe()) {
    head.linear_weight = ToVector(impl_->w_l);
    head.linear_bias = ToVector(impl_->b_l);
  }
  return head;
}

int64_t HeadTrainer::step() const { return impl_->step; }
int64_t HeadTrainer::ema_updates() const { return impl_->ema_updates; }

absl::StatusOr<std::string> HeadTrainer::SerializeCheckpoint(
    const std::map<std::string, std::string>& metadata) const {
  ASSIGN_OR_RETURN(SafetensorsFile file,
                   ParseSafetensors(SerializeHeadCheckpoint(Head())));
  for (const auto& [key, value] : metadata) file.metadata[key] = value;
  file.tensors["adam.m_v"] = ToRecord(impl_->m_v);
  file.tensors["adam.s_v"] = ToRecord(impl_->s_v);
  file.tensors["adam.m_g"] = ToRecord(impl_->m_g);
  file.tensors["adam.s_g"] = ToRecord(impl_->s_g);
  file.metadata["adam_step"] = absl::StrCat(impl_->adam_step);
  if (has_linear_probe()) {
    file.tensors["linear_adam.m_w"] = ToRecord(impl_->m_wl);
    file.tensors["linear_adam.s_w"] = ToRecord(impl_->s_wl);
    file.tensors["linear_adam.m_b"] = ToRecord(impl_->m_bl);
    file.tensors["linear_adam.s_b"] = ToRecord(impl_->s_bl);
    file.metadata["linear_adam_step"] = absl::StrCat(impl_->linear_adam_step);
  }
  file.metadata["ema_updates"] = absl::StrCat(impl_->ema_updates);
  return SerializeSafetensors(file);
}

absl::Status HeadTrainer::RestoreCheckpoint(absl::string_view bytes) {
  return CatchTorchErrors("restoring the checkpoint", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const SegmentationHead head,
                     ParseHeadCheckpoint(bytes, impl_->options.backbone,
                                         impl_->options.dim));
    if (head.classes != impl_->options.classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint has ", head.classes,
                       " classes, training asks for ", impl_->options.classes));
    }
    ASSIGN_OR_RETURN(const SafetensorsFile file, ParseSafetensors(bytes));
    for (const char* name : {"adam.m_v", "adam.s_v", "adam.m_g", "adam.s_g"}) {
      if (!file.tensors.count(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat("checkpoint has no optimizer state (", name, ")"));
      }
    }
    const int64_t k = head.classes, d = head.dim;
    auto vec = [](const std::vector<float>& v, std::vector<int64_t> shape) {
      return torch::from_blob(const_cast<float*>(v.data()), shape,
                              torch::kFloat)
          .clone();
    };
    impl_->v_r = vec(head.theta_r.v, {k, d}).requires_grad_(true);
    impl_->g_r = vec(head.theta_r.g, {k}).requires_grad_(true);
    impl_->v_m = vec(head.theta_m.v, {k, d});
    impl_->g_m = vec(head.theta_m.g, {k});
    impl_->m_v = FromRecord(file.tensors.at("adam.m_v"));
    impl_->s_v = FromRecord(file.tensors.at("adam.s_v"));
    impl_->m_g = FromRecord(file.tensors.at("adam.m_g"));
    impl_->s_g = FromRecord(file.tensors.at("adam.s_g"));
    impl_->step = head.step;
    if (has_linear_probe() && !head.linear_weight.empty() &&
        file.tensors.count("linear_adam.m_w")) {
      impl_->w_l = vec(head.linear_weight, {k, d}).requires_grad_(true);
      impl_->b_l = vec(head.linear_bias, {k}).requires_grad_(true);
      impl_->m_wl = FromRecord(file.tensors.at("linear_adam.m_w"));
      impl_->s_wl = FromRecord(file.tensors.at("linear_adam.s_w"));
      impl_->m_bl = FromRecord(file.tensors.at("linear_adam.m_b"));
      impl_->s_bl = FromRecord(file.tensors.at("linear_adam.s_b"));
      if (!absl::SimpleAtoi(file.metadata.count("linear_adam_step")
                                ? file.metadata.at("linear_adam_step")
                                : "0",
                            &impl_->linear_adam_step)) {
        return absl::InvalidArgumentError(
            "checkpoint metadata linear_adam_step is not a number");
      }
    }
    if (!absl::SimpleAtoi(file.metadata.count("adam_step")
                              ? file.metadata.at("adam_step")
                              : "0",
                          &impl_->adam_step) ||
        !absl::SimpleAtoi(file.metadata.count("ema_updates")
                              ? file.metadata.at("ema_updates")
                              : "0",
                          &impl_->ema_updates)) {
      return absl::InvalidArgumentError(
          "checkpoint metadata adam_step / ema_updates is not a number");
    }
    return absl::OkStatus();
  });
}

double HeadTrainer::FocalLossForTest(const std::vector<float>& logits,
                                     const std::vector<int64_t>& targets,
                                     int classes, double gamma) {
  const torch::Tensor l = torch::from_blob(
      const_cast<float*>(logits.data()),
      {static_cast<int64_t>(targets.size()), classes}, torch::kFloat);
  const torch::Tensor t =
      torch::from_blob(const_cast<int64_t*>(targets.data()),
                       {static_cast<int64_t>(targets.size())}, torch::kLong);
  return FocalLoss(l, t, gamma).item<double>();
}

}  // namespace primaps
