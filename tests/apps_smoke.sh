#!/usr/bin/env bash
# Every application and variant through the attn tool for a few steps: train
# (save a checkpoint), eval (load it), and translate's viz and beam search.
# Quality is test_apps' business; this run is short enough for the sanitizer
# builds, where it stands in for test_apps' minutes of training.
#   tests/apps_smoke.sh ATTN_BINARY WORK_DIR
set -euo pipefail
attn=$1 work=$2
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work" && cd "$work"
runs=0
train_eval() {  # NAME [VARIANT]
  local name=$1 ck=$1${2:+-$2}.safetensors
  "$attn" train "$name" ${2:+--variant "$2"} --steps 3 --batch 4 --eval-examples 4 --show 1 --checkpoint "$ck" >/dev/null
  "$attn" eval "$name" --eval-examples 4 --show 1 --checkpoint "$ck" >/dev/null
  runs=$((runs + 1))
}
for v in transformer lstm-bahdanau lstm-luong; do train_eval translate "$v"; done
"$attn" eval translate --beam 3 --eval-examples 2 --show 0 --checkpoint translate-transformer.safetensors >/dev/null
"$attn" viz translate --checkpoint translate-lstm-luong.safetensors --out viz >/dev/null
python3 "$here/check_viz.py" viz_avg.png >/dev/null
train_eval tag
for v in gatconv gatv2; do train_eval gat "$v"; done
for v in seed lsa; do train_eval vit "$v"; done
# vit on the generated shapes, Fashion-MNIST with augmentation and a JSON log,
# the log drawn by attn plot, and a PNG file classified by the checkpoint
"$attn" train vit --dataset shapes --steps 3 --batch 4 --eval-examples 4 --checkpoint vit-shapes.safetensors >/dev/null
"$attn" train vit --steps 3 --batch 4 --eval-examples 4 --augment crop,flip --log-json vit.jsonl \
  --checkpoint vit-aug.safetensors >/dev/null
test "$(wc -l < vit.jsonl)" -eq 3
"$attn" plot vit.jsonl --out vit_loss.png >/dev/null
python3 "$here/check_viz.py" vit_loss.png >/dev/null
"$attn" eval vit --image vit_loss.png --checkpoint vit-aug.safetensors | grep -q "vit_loss.png: "
runs=$((runs + 2))
train_eval multimodal
train_eval dqn
train_eval caption
train_eval lm
# attn viz for every application that has one: files that decode, of a
# reasonable size, not blank
"$attn" viz vit --checkpoint vit-seed.safetensors --index 3 --out viz_vit >/dev/null
"$attn" viz vit --checkpoint vit-lsa.safetensors --image vit_loss.png --out viz_vit_lsa >/dev/null
"$attn" viz vit --checkpoint vit-shapes.safetensors --out viz_vit_shapes >/dev/null
"$attn" viz lm --checkpoint lm.safetensors --out viz_lm >/dev/null
"$attn" viz tag --checkpoint tag.safetensors --index 2 --out viz_tag >/dev/null
"$attn" viz gat --checkpoint gat-gatconv.safetensors --out viz_gat >/dev/null
"$attn" viz gat --checkpoint gat-gatv2.safetensors --index 5 --out viz_gatv2 >/dev/null
"$attn" viz caption --checkpoint caption.safetensors --out viz_caption >/dev/null
"$attn" viz multimodal --checkpoint multimodal.safetensors --index 1 --out viz_multimodal >/dev/null
"$attn" viz dqn --checkpoint dqn.safetensors --out viz_dqn >/dev/null
for f in viz_vit_rollout viz_vit_heads viz_vit_lsa_rollout viz_vit_lsa_heads viz_vit_shapes_rollout viz_lm_layer0 \
         viz_lm_layer2 viz_tag viz_gat viz_gatv2 viz_caption viz_multimodal viz_dqn; do
  python3 "$here/check_viz.py" "$f.png" >/dev/null
done
# a file's image through caption and multimodal
"$attn" eval caption --image vit_loss.png --checkpoint caption.safetensors | grep -q "vit_loss.png: "
test "$("$attn" eval multimodal --image vit_loss.png --checkpoint multimodal.safetensors | grep -c "vit_loss.png: what")" -eq 2
echo "apps smoke: $runs trainings and evaluations, beam search and viz ran"
