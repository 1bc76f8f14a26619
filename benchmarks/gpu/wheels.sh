#!/usr/bin/env bash
# The Python packages the device image lacks, as wheels for its CPython 3.12 manylinux x86-64,
# fetched here (where pip reaches a registry) into .gpu-wheels/ (git-ignored; carry it to the
# device). check.sh installs them there with --target /tmp/site and puts that on PYTHONPATH.
#
# The image has torch, onnx, onnxscript, onnxruntime (CPU), networkx, jinja2, safetensors, pyyaml,
# pillow, tqdm, tensorboard and matplotlib (.library/device/KINDS.md); progan-dsl also needs
# pydantic, whose exact needs are pinned here (pydantic 2.14.4 pins pydantic-core 2.50.5 and asks
# typing-extensions >= 4.16 and typing-inspection >= 0.4.4). Not carried: onnxruntime-gpu (about
# 250 MB, over a call's 64 MiB), so onnxruntime's CUDA provider is absent there and its rows say so.
#
#   bash benchmarks/gpu/wheels.sh          (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."
tool="${GPU_WHEELS_TOOL:-../shared/tools/gpu-wheels.sh}"
[ -x "$tool" ] || [ -f "$tool" ] || { echo "wheels.sh: $tool not found (set GPU_WHEELS_TOOL)" >&2; exit 2; }
bash "$tool" \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  typing-extensions==4.16.0
du -sh .gpu-wheels
