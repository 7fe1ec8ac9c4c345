#!/bin/bash
# The lent-GPU run of 2026-12-04 (issue 20): five distillations at once on one H200 -- IMDN x4 `cnn` for the
# GPU goal and four zoo students (RLFN/RFDN x4, `cnn` and `cnn-int8`) -- in one device call, as the device
# tool wants (one prepared script; ../shared does not travel, so what a run needs is staged in gpu/ first).
#
# Stage (on the dev machine, in the repository root; makes gpu/, git-ignored through .git/info/exclude, ~45 MB:
# the three teachers, copies of ../shared's BSD200, T91 and Set5, the calibrated students as build_zoo.py makes
# them, and py3.12 wheels of typer/rich and their requirements, since the image's own may differ):
#                                     bash benchmarks/gpu_lease.sh stage [../shared]
# Run (device tool, carry ["gpu"]):   bash benchmarks/gpu_lease.sh cuda 7m $OUT
# Then a second cosine cycle from the first round's students (copied over gpu/st/):
#                                     LR=1e-3 SEED=1 JOB_LIMIT=250 bash benchmarks/gpu_lease.sh cuda 3m30s $OUT
# Locally, as a dry run of the same path: BATCH=2 PATCH=24 JOBS="imdn" bash benchmarks/gpu_lease.sh cpu 150s /tmp/gout
set -u
CLI_WHEELS="typer rich pydantic pydantic-core typing-inspection annotated-types annotated-doc markdown-it-py mdurl pygments shellingham typing-extensions"
if [ "${1:-}" = stage ]; then
  set -e
  S=${2:-../shared} PYV=${PYV:-.venv/bin/python}
  grep -qx /gpu/ .git/info/exclude 2>/dev/null || echo /gpu/ >> .git/info/exclude
  mkdir -p gpu/ck gpu/data gpu/st gpu/whl
  cp $S/checkpoints/{IMDN_x4,RLFN_x4,RFDN_x4}.pth gpu/ck/
  rm -rf gpu/data/*; cp -r $S/data/train/T91 $S/data/train/BSD200 $S/data/benchmarks/Set5 gpu/data/
  rm -rf gpu/data/Set5/LR_bicubic/X2 gpu/data/Set5/LR_bicubic/X3  # x4 only: the carry limit is 64 MiB in all
  binarize() { $PYV -m scales_cli binarize "$@" --calibrate $S/data/train/T91 --force > /dev/null; }
  binarize $S/checkpoints/IMDN_x4.pth --recipe cnn -o gpu/st/imdn-cnn.safetensors
  for recipe in cnn cnn-int8; do
    for pair in rlfn_x4:RLFN_x4 rfdn_x4:RFDN_x4; do
      binarize $S/checkpoints/${pair#*:}.pth --recipe $recipe -o gpu/st/${pair%%:*}-$recipe.safetensors
    done
  done
  pins=$($PYV -c "import sys; from importlib.metadata import version as v; print(' '.join(f'{n}=={v(n)}' for n in sys.argv[1:]))" $CLI_WHEELS)
  rm -f gpu/whl/*.whl
  $PYV -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d gpu/whl $pins
  du -sh gpu; exit 0
fi
DEV=$1 BUDGET=$2 DEST=$3
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OMP_NUM_THREADS=2
PY=${PY:-python3}
if [ "$DEV" != cpu ]; then  # the image's typer/rich may differ from ours: carry the project's versions
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site gpu/whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
W=gpu/work; rm -rf $W; mkdir -p $W $DEST
D=gpu/data
{ date -u; nproc; grep -m1 'model name' /proc/cpuinfo; grep -o -w -E 'avx512_vpopcntdq|avx512_vnni|avx512f|avx2|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  $PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"; } > $W/env.txt 2>&1
(nvidia-smi dmon -s u -d 10 > $W/dmon.txt 2>&1 &) 2>/dev/null
common=(--data $D/BSD200 --data $D/T91 --val $D/Set5 --budget $BUDGET --batch ${BATCH:-32} --patch ${PATCH:-48} --lr ${LR:-2e-3}
        --val-every 500 --save-every 1000 --workers 2 --device $DEV --force --json)
ft() {  # NAME STUDENT TEACHER [extra options]
  local name=$1 st=$2 ck=$3; shift 3
  timeout -s INT ${JOB_LIMIT:-500} $PY -m scales_cli finetune gpu/st/$st.safetensors --teacher gpu/ck/$ck.pth \
    "${common[@]}" --out $W/$name "$@" > $W/$name.log 2>&1
  echo "$name exit $?" >> $W/env.txt
}
JOBS=${JOBS:-"imdn rlfn_x4-cnn rfdn_x4-cnn rlfn_x4-cnn-int8 rfdn_x4-cnn-int8"}
zoo=(--schedule cosine --warmup 50 --autocast auto --seed ${SEED:-0})
for name in $JOBS; do
  case $name in
    imdn) ft imdn imdn-cnn IMDN_x4 --scale-lr 1e-2 & ;;
    rlfn*) ft $name $name RLFN_x4 "${zoo[@]}" & ;;
    rfdn*) ft $name $name RFDN_x4 "${zoo[@]}" & ;;
  esac
done
wait
date -u >> $W/env.txt
cp $W/env.txt $W/dmon.txt $DEST/ 2>/dev/null
for name in $JOBS; do
  tar czf $DEST/$name.tgz --exclude=state.pt -C $W $name $name.log 2>/dev/null || tar czf $DEST/$name.tgz -C $W $name.log
done
ls -la $DEST; cat $W/env.txt; tail -n 3 $W/*.log
