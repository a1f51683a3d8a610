#!/usr/bin/env bash
# Install torch 2.13.0 into the venv whose python is $1, choosing the build by hardware:
#   NVIDIA GPU present          -> the default index's build (CUDA, several GB)
#   no GPU, CPU index reachable -> the CPU build from PyTorch's own CPU wheel index
#   no GPU, index unreachable   -> the plain install (whatever pip's configured sources give)
# Skips when the venv already has torch 2.13.0. PDDATTN_TORCH=cpu|cuda|plain forces a route.
set -euo pipefail
PY=${1:?usage: install-torch.sh VENV_PYTHON}
VERSION=2.13.0
CPU_INDEX=${PDDATTN_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

installed=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
if [[ "$installed" == "$VERSION" || "$installed" == "$VERSION+"* ]]; then
  exit 0
fi

has_nvidia_gpu() {
  [[ -e /proc/driver/nvidia/version ]] || { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }
}

index_reachable() {
  "$PY" - "$CPU_INDEX/torch/" <<'PYEOF'
import sys, urllib.request
try:
    urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="HEAD"), timeout=15)
except Exception as exc:
    print(f"  (CPU wheel index not reachable: {exc})", file=sys.stderr)
    sys.exit(1)
PYEOF
}

route=${PDDATTN_TORCH:-}
if [[ -z "$route" ]]; then
  if has_nvidia_gpu; then route=cuda
  elif index_reachable; then route=cpu
  else route=plain
  fi
fi
case "$route" in
  cuda)  echo "torch: NVIDIA GPU found, installing the CUDA build of torch $VERSION"
         "$PY" -m pip install -q "torch==$VERSION" ;;
  cpu)   echo "torch: no NVIDIA GPU, installing the CPU build torch $VERSION+cpu from $CPU_INDEX"
         # --extra-index-url keeps the default index for torch's own dependencies.
         "$PY" -m pip install -q --extra-index-url "$CPU_INDEX" "torch==$VERSION+cpu" ;;
  plain) echo "torch: no NVIDIA GPU and no CPU wheel index; plain install of torch $VERSION (local wheels if pip has them, else the default build)"
         "$PY" -m pip install -q "torch==$VERSION" ;;
  *)     echo "PDDATTN_TORCH must be cpu, cuda or plain, got '$route'" >&2; exit 2 ;;
esac
"$PY" -c 'import torch; print("torch:", torch.__version__, "(CUDA " + str(torch.version.cuda) + ")" if torch.version.cuda else "(CPU only)")'
