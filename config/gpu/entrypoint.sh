#!/bin/sh
# The GPU image's entrypoint: model files first, then the worker, which
# starts ComfyUI itself and keeps /health at 503 until it is ready.
set -eu

models_dir="${COMFYUME_MODELS_DIR:-/models}"
manifest="${COMFYUME_MODELS_MANIFEST:-/opt/comfyume/models.toml}"
paths="$models_dir/extra_model_paths.yaml"

# Downloads what is missing (resuming), checks sizes and sha256; a volume
# synced ahead of the day is only checked. A failure stops the container
# with the reason in its log: a replica without its models must not serve.
comfyume models sync --manifest "$manifest" --dest "$models_dir" \
  --extra-model-paths "$paths"

exec comfyume worker \
  --models-manifest "$manifest" --models-dir "$models_dir" \
  --comfyui-cmd "cd /opt/comfyui && exec venv/bin/python main.py \
--listen 127.0.0.1 --port 8188 --disable-auto-launch \
--extra-model-paths-config '$paths' ${COMFYUI_ARGS:-}"
