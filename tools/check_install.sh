#!/usr/bin/env bash
# The documented installation check (docs/install.md). Not part of `make test`: it builds a virtual
# environment from nothing, which takes minutes.
#
#   tools/check_install.sh [--tune] [--existing] [--keep]
#
# In a new temporary folder: a fresh venv, then (as docs/install.md says)
#   pip install --no-deps recbole==1.2.1 ; pip install <this checkout>          (--tune: <checkout>[tune])
# --existing first makes it an "existing RecBole 1.2.1 environment" (`pip install recbole==1.2.1` with
# RecBole's own dependencies), then installs this checkout into it.
# Then, from another directory: the installed versions equal requirements*.txt, `pip check` reports only
# RecBole's Ray pin, `python -m recbole_ext --help`, a one-epoch BPR run on ml-100k, a run with an example
# config given by name, and (--tune) a 2-trial parallel search. Prints the time of each step.
set -euo pipefail

CHECKOUT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
TUNE=0; EXISTING=0; KEEP=0
for arg in "$@"; do
  case "$arg" in
    --tune) TUNE=1 ;;
    --existing) EXISTING=1 ;;
    --keep) KEEP=1 ;;
    *) echo "usage: $0 [--tune] [--existing] [--keep]" >&2; exit 2 ;;
  esac
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/recbole_ext-install.XXXXXX")"
if [ "$KEEP" = 0 ]; then trap 'rm -rf "$WORK"' EXIT; else echo "keeping $WORK"; fi
VENV="$WORK/venv"
PY="$VENV/bin/python"
START=$(date +%s)

step() {  # step "title" command...: run it, print its wall time
  local t0 t1
  echo "== $1"
  shift
  t0=$(date +%s)
  "$@"
  t1=$(date +%s)
  echo "   ($((t1 - t0)) s)"
}

pip_q() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }

step "fresh venv ($PYTHON) in $WORK" "$PYTHON" -m venv "$VENV"
if [ "$EXISTING" = 1 ]; then
  step "existing RecBole environment: pip install recbole==1.2.1 (with its declared dependencies)" \
    pip_q recbole==1.2.1
else
  step "pip install --no-deps recbole==1.2.1" pip_q --no-deps recbole==1.2.1
fi
TARGET="$CHECKOUT"
[ "$TUNE" = 1 ] && TARGET="$CHECKOUT[tune]"
step "pip install $TARGET" pip_q "$TARGET"

RUN="$WORK/elsewhere"   # not the checkout: what runs must come from the installed package
mkdir -p "$RUN"
cd "$RUN"

check_versions() {  # every pin of requirements.txt (and requirements-tune.txt with --tune) is what is installed
  local files=("$CHECKOUT/requirements.txt")
  [ "$TUNE" = 1 ] && files+=("$CHECKOUT/requirements-tune.txt")
  "$PY" - "${files[@]}" <<'EOF'
import re, sys
from importlib.metadata import version
from packaging.version import Version
bad = []
for path in sys.argv[1:]:
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, pin = re.split(r"==", line)
        name = re.sub(r"\[.*\]", "", name)
        have = version(name)
        if Version(have).public != Version(pin).public:  # a local build (+cpu) is the same release
            bad.append(f"{name}: installed {have}, requirements pin {pin}")
        print(f"   {name}=={have}")
print(f"   recbole=={version('recbole')}  recbole_ext=={version('recbole_ext')}")
if bad:
    sys.exit("version mismatch:\n" + "\n".join(bad))
EOF
}
step "installed versions equal the pins" check_versions

pip_check() {  # RecBole's declared Ray pin is the one known, accepted complaint (docs/install.md)
  local out
  out="$("$PY" -m pip check 2>&1 || true)"
  echo "$out" | sed 's/^/   /'
  if echo "$out" | grep -v -E "^recbole 1\.2\.1 (requires ray|has requirement ray)|^No broken requirements" | grep -q .; then
    echo "unexpected pip check complaint" >&2
    return 1
  fi
}
step "pip check (only RecBole's ray<=2.6.3 pin may be reported)" pip_check

export OMP_NUM_THREADS=1 RAY_USAGE_STATS_ENABLED=0
step "python -m recbole_ext --help (from $RUN)" "$PY" -m recbole_ext --help
step "recbole_ext console script" "$VENV/bin/recbole_ext" examples
step "python -m recbole_ext run --model=BPR --dataset=ml-100k --epochs=1" \
  "$PY" -m recbole_ext run --model=BPR --dataset=ml-100k --epochs=1 --show_progress=False --state=WARNING
step "python -m recbole_ext run ... --config_files=bpr_ml-100k.yaml (an example, by name)" \
  "$PY" -m recbole_ext run --model=BPR --dataset=ml-100k --config_files=bpr_ml-100k.yaml --epochs=1 \
  --show_progress=False --state=WARNING

if [ "$TUNE" = 1 ]; then
  # an integer quniform (the README's crash: 48.0 for embedding_size) and a choice; 2 random trials
  printf 'learning_rate choice [0.001,0.01]\nembedding_size quniform 32,64,16\n' > "$RUN/two.test"
  step "python -m recbole_ext hyper: 2 trials in parallel" \
    "$PY" -m recbole_ext hyper --model=BPR --dataset=ml-100k --params_file=two.test --max_trials=2 \
    --max_concurrent=2 --epochs=1 --output_file=two.result --verbose=0 --state=WARNING
  check_trials() {
    "$PY" - <<'EOF'
import glob, json
summary = json.load(open(glob.glob("saved/hyper/*-results.json")[0]))
trials = summary["trials"]
assert len(trials) == 2 and not any("error" in t for t in trials), trials
assert all(type(t["params"]["embedding_size"]) is int and t["params"]["embedding_size"] in (32, 48, 64) for t in trials)
print("   2 trials, no error, embedding_size:", [t["params"]["embedding_size"] for t in trials])
EOF
    test -s "$RUN/two.result"
  }
  step "both trials finished, integer embedding_size, RecBole's --output_file written" check_trials
fi
echo "== install check passed in $(( $(date +%s) - START )) s"
