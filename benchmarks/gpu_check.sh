#!/usr/bin/env bash
# GPU check for issue 17: train configs/shipped/ferplus8.yaml for 2 epochs on `cuda` (and in 2
# processes with --nproc 2 where there are >= 2 GPUs), evaluate each run on FER+ test, and print
# images/s, epoch time, peak GPU memory and validation/test accuracy next to the CPU figures of
# the shipped ferplus8 run. A few minutes on one modern GPU.
#
#   benchmarks/gpu_check.sh                 # from the repository root (or anywhere: it cds there)
#   PYTHON=/opt/conda/bin/python benchmarks/gpu_check.sh
#   EPOCHS=1 OUT=/tmp/gpu-check benchmarks/gpu_check.sh
#
# Assumptions, for a fresh machine with this repository and ../shared beside it:
# - a Python with a CUDA build of torch and ferlab's dependencies (numpy, scikit-learn, Pillow,
#   PyYAML, typer, tqdm, matplotlib, opencv-python-headless, onnxruntime). $PYTHON, .venv/bin/python,
#   python3 and python are tried in turn, and the first whose torch sees a GPU is used. ./setup.sh
#   is NOT run: it pins the CPU build of torch (constraints.txt), which would replace a CUDA torch.
#   With no internet, missing dependencies cannot be installed; the script says which are missing.
# - ferlab runs from src/ (PYTHONPATH), so it need not be installed.
# - the FER+ images are in .data/ferplus, or in ferplus.tar.gz under ../shared/datasets or
#   shared/datasets, which is unpacked into .data when .data/ferplus is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-2}
OUT=${OUT:-gpu-check}

pick_python() {
    local candidate
    for candidate in ${PYTHON:-} .venv/bin/python python3 python; do
        command -v "$candidate" >/dev/null 2>&1 || [ -x "$candidate" ] || continue
        if "$candidate" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    return 1
}
PY=$(pick_python) || {
    echo "no Python here has a torch that sees a CUDA GPU (tried: ${PYTHON:-} .venv/bin/python python3 python)" >&2
    exit 2
}
missing=$("$PY" - <<'EOF'
import importlib.util
names = {"numpy": "numpy", "sklearn": "scikit-learn", "PIL": "Pillow", "yaml": "PyYAML", "typer": "typer",
         "tqdm": "tqdm", "matplotlib": "matplotlib", "cv2": "opencv-python-headless", "onnxruntime": "onnxruntime"}
print(" ".join(pip for module, pip in names.items() if importlib.util.find_spec(module) is None))
EOF
)
if [ -n "$missing" ]; then
    echo "installing ferlab's missing dependencies into $PY: $missing (keeps its CUDA torch)" >&2
    "$PY" -m pip install -q $missing || { echo "could not install: $missing" >&2; exit 2; }
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
ferlab() { "$PY" -c "from ferlab.cli.main import app; app(prog_name='ferlab')" "$@"; }

if [ ! -d .data/ferplus ]; then
    archive=$(ls ../shared/datasets/ferplus.tar.gz shared/datasets/ferplus.tar.gz 2>/dev/null | head -n 1 || true)
    [ -n "$archive" ] || { echo "no .data/ferplus and no ferplus.tar.gz in ../shared/datasets or shared/datasets" >&2; exit 2; }
    [ -L .data ] && [ ! -e .data ] && rm .data   # a symlink from another machine that points nowhere here
    mkdir -p .data && tar -xzf "$archive" -C .data
fi

GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
"$PY" -c "import torch; print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s): ' + ', '.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) + f', bf16: {torch.cuda.is_bf16_supported()}')"
mkdir -p "$OUT"
runs=(cuda)
ferlab train configs/shipped/ferplus8.yaml --set "train.epochs=$EPOCHS" --name gpu-cuda --runs-dir "$OUT" --device cuda
if [ "$GPUS" -ge 2 ]; then
    ferlab train configs/shipped/ferplus8.yaml --set "train.epochs=$EPOCHS" --name gpu-ddp2 --runs-dir "$OUT" \
        --device cuda --nproc 2
    runs+=(ddp2)
fi
for run in "${runs[@]}"; do
    ferlab evaluate "$OUT/gpu-$run" --data .data/ferplus --out "$OUT/eval-$run" >/dev/null
done

"$PY" - "$OUT" "${runs[@]}" <<'EOF'
import json, sys
from pathlib import Path

import torch

out, runs = Path(sys.argv[1]), sys.argv[2:]
shipped = torch.load("src/ferlab/weights/ferplus8.pt", weights_only=True)["info"]["metrics"]
cpu_epoch = shipped["train_seconds"] / shipped["epochs_run"]
print(f"\n{'run':<28} {'img/s':>9} {'s/epoch':>8} {'peak GPU MB':>12} {'val acc':>8} {'test acc':>9}  precision")
train_images = None
for run in runs:
    folder = out / f"gpu-{run}"
    history = json.loads((folder / "history.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    test = json.loads((out / f"eval-{run}" / "metrics.json").read_text())
    summary = (folder / "summary.txt").read_text()
    counts = json.loads(summary.split("Data: ", 1)[1])
    train_images = sum(counts["train"].values())
    rate = sum(h["images_per_s"] for h in history[1:] or history) / len(history[1:] or history)  # epoch 1 warms up
    epoch = sum(h["seconds"] for h in history[1:] or history) / len(history[1:] or history)
    memory = metrics.get("peak_gpu_memory_mb", float("nan"))
    accuracy = test.get("accuracy", test.get("all", {}).get("accuracy", float("nan")))
    print(
        f"{run + ' (' + metrics['device_name'][:14] + ')':<28} {rate:>9.0f} {epoch:>8.1f} {memory:>12.0f} "
        f"{100 * metrics['val']['accuracy']:>7.2f}% {100 * accuracy:>8.2f}%  {metrics['precision']}, "
        f"{metrics['processes']} process(es), {len(history)} epochs"
    )
print(
    f"{'cpu (2-core EPYC, shipped)':<28} {train_images / cpu_epoch:>9.0f} {cpu_epoch:>8.1f} {'-':>12} "
    f"{100 * shipped['val']['accuracy']:>7.2f}% {100 * shipped['test']['accuracy']:>8.2f}%  fp32, 1 process, "
    f"{shipped['epochs_run']} epochs (accuracy after 30 epochs, not 2)"
)
EOF
