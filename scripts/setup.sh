#!/usr/bin/env bash
# Installs everything optforge needs on a fresh Debian 12 machine:
#  - Debian packages for building (compiler, CMake, libraries) and the reference Python stack;
#  - .venv: a project-local Python environment, pinned, used only by tests and benchmarks.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  nlohmann-json3-dev libcli11-dev libboost1.81-dev zlib1g-dev libdeflate-dev libpcre2-dev libdnnl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev clang-format
  python3 python3-venv python3-dev python3-torch python3-numpy
  chromium prometheus
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian's torch (CPU, 1.13) lives in the system python3.11's dist-packages: build the venv on
# /usr/bin/python3 with system site packages so it sees torch; pin the rest.
if [ ! -x .venv/bin/python ] || ! cmp -s scripts/requirements.txt .venv/.requirements.txt; then
  echo "setup: creating .venv (reference libraries for tests and benchmarks)"
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/requirements.txt
  cp scripts/requirements.txt .venv/.requirements.txt
fi
.venv/bin/python -c "import torch, fairscale, safetensors, numpy; print('setup: reference env ok: torch', torch.__version__, 'fairscale', fairscale.__version__, 'numpy', numpy.__version__)"
