#!/bin/bash
# Trains, evaluates, exports and predicts (every engine) and explains with tiny randomly
# initialised encoders of other architectures than BERT, on 200 arXiv rows (40 to score).
# A check that "any Hugging Face encoder" holds, not a quality figure: the models are random.
#   bash bench/architectures.sh [PYTHON]     (default .venv/bin/python; mlabel on its PATH)
set -u
PY=${1:-.venv/bin/python}
BIN=$(dirname "$PY")
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
echo "# $(date -u +%FT%TZ) $(lscpu | grep 'Model name' | sed 's/  */ /g')"
"$PY" - "$W" <<'PY'
import sys
import pandas as pd
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer
from mlabel.model import resolve_encoder

w = sys.argv[1]
rows = pd.read_csv("data/arxiv_topics.csv.gz").sample(240, random_state=0)
rows.iloc[:200].to_csv(f"{w}/train.csv", index=False)
rows.iloc[200:].to_csv(f"{w}/test.csv", index=False)
tok = AutoTokenizer.from_pretrained(resolve_encoder("default"))
tiny = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=514, pad_token_id=0)
kinds = {"electra": dict(embedding_size=32), "deberta": {}, "deberta-v2": {}, "roberta": {},
         "xlm-roberta": {}, "camembert": {}, "distilbert": dict(dim=32, n_layers=2, n_heads=4,
         hidden_dim=37), "albert": dict(embedding_size=16), "mpnet": {}, "megatron-bert": {},
         "modernbert": dict(global_attn_every_n_layers=1, local_attention=16)}
for kind, extra in kinds.items():
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.for_model(kind, **{**tiny, **extra})).save_pretrained(f"{w}/enc-{kind}")
    tok.save_pretrained(f"{w}/enc-{kind}")
PY
for enc in "$W"/enc-*; do
  kind=${enc##*/enc-}; o="$W/out-$kind"; ok=1
  step() { "$BIN/mlabel" "$@" > "$o.log" 2>&1 || { ok=0; echo "[$kind] FAILED: mlabel $1"; tail -3 "$o.log"; }; }
  step train "$W/train.csv" --text-cols TITLE ABSTRACT --model "$enc" --epochs 1 --max-len 32 \
    --batch-size 16 --ensemble none --out "$o"
  grep -h "precision auto" "$o.log" | sed "s/^/[$kind] /"
  step evaluate "$o/model" "$W/test.csv"
  step export "$o/model" --onnx --int8
  for e in torch bf16 onnx onnx-int8 openvino auto; do
    step predict "$o/model" "$W/test.csv" --engine "$e" --proba -o "$o/p-$e.csv"
  done
  step explain "$o/model" --text "quantum spin chains"
  "$PY" - "$o" "$kind" "$ok" <<'PY'
import glob, sys
import pandas as pd
o, kind, ok = sys.argv[1:]
ref = pd.read_csv(f"{o}/p-torch.csv").iloc[:, 1:].to_numpy()
diffs = {f.split("p-")[-1][:-4]: abs(pd.read_csv(f).iloc[:, 1:].to_numpy() - ref).max()
         for f in sorted(glob.glob(f"{o}/p-*.csv"))}
print(f"[{kind}] {'all steps ran' if ok == '1' else 'STEPS FAILED'}; max |p - torch|: "
      + ", ".join(f"{e} {d:.4f}" for e, d in diffs.items() if e != "torch"))
PY
done
