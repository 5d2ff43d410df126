#!/usr/bin/env bash
# Installs exactly the Debian 12 packages this project needs that are missing.
# Idempotent: a second run installs nothing and does not touch the network.
#
#   scripts/install_deps.sh [--full]
#
# --full: also what `scripts/test.sh --full` needs beyond the test suite:
# the Docker engine and debootstrap (scripts/check_images.sh builds and
# runs the images, making the Debian base image itself).
set -euo pipefail
full=0
[ "${1:-}" = "--full" ] && full=1

packages=(
  # Toolchain.
  build-essential cmake ninja-build pkg-config git clang-format ccache openssl
  # libFuzzer and the sanitizer runtimes.
  clang libclang-rt-14-dev
  # Engine.
  libtorch-dev libopenblas0-openmp libopencv-dev libabsl-dev nlohmann-json3-dev zlib1g-dev
  # Serving.
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc prometheus-cpp-dev libcpp-httplib-dev libssl-dev
  # Tests and benchmarks.
  libgtest-dev libgmock-dev libbenchmark-dev libjpeg-dev
  # Datasets: Potsdam's MATLAB .mat files.
  libmatio-dev
  # Golden fixtures (Pillow's resize, SciPy's .mat writer, torchvision's
  # augmentations) and the Python example client.
  python3 python3-torch python3-torchvision python3-numpy python3-pil python3-scipy python3-grpcio
  python3-protobuf
  # STEGO's checkpoints pickle an OmegaConf config (the test checkpoints).
  python3-omegaconf
  # The Python package (python/): its offline pip install and its pytest
  # suite; the web page's test in a real headless browser.
  python3-venv python3-pip python3-setuptools python3-wheel python3-pytest
  python3-selenium python3-yaml chromium chromium-driver
  # promtool (metrics and config checks) and the Prometheus server for the
  # deployment test; docker-compose and kubectl to validate deploy/.
  prometheus docker-compose
)
# kubectl (for `kubectl kustomize`): Debian's kubernetes-client, unless a
# kubectl is already installed (they conflict).
command -v kubectl > /dev/null || packages+=(kubernetes-client)
if [ "$full" -eq 1 ]; then
  # A docker command installed some other way is left as it is; the engine
  # (dockerd) comes with docker.io.
  command -v dockerd > /dev/null || packages+=(docker.io)
  packages+=(debootstrap curl)
fi

# PRIMAPS_SKIP_PACKAGES: space-separated packages to leave out (the CUDA
# image brings its own LibTorch).
skip=" ${PRIMAPS_SKIP_PACKAGES:-} "
missing=()
for p in "${packages[@]}"; do
  [[ "$skip" == *" $p "* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install_deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
