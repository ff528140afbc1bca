#!/bin/bash
# Probe helper (session 37): the ten curve-design tasks of sessions 35-37 for one checkpoint,
# two runs at a time, one thread each (about 40-50 min on the 2-core machine with the default
# refinement rounds). Finished tasks are skipped, so it resumes after a stop.
#   bash datasets/checkpoints/nonlinear/probes/ten_tasks.sh CHECKPOINT TAG [extra design args]
#   python datasets/checkpoints/nonlinear/probes/ten_tasks_table.py 'runs/des_TAG_*' ...
# Needs runs/heldout (heldout_targets.py datasets/nonlinear/raw/corpus.npz runs/heldout --n 8)
# and runs/c25098.npz (gnn-truss data pack --limit 25098 datasets/nonlinear/raw/corpus.npz ...);
# both are made here when missing. DRY=1 prints the commands only. SEED=S runs the search with
# seed S (default 0) into runs/des_TAG_NAME_sS; TASKS="t1 stiff1.3" runs only the tasks named.
set -e
set -f  # the named targets hold a '*'
ck=${1:?checkpoint}; tag=${2:?tag}; shift 2; extra="$*"
seed=${SEED:-0}; suffix=""; [ "$seed" = 0 ] || suffix=_s$seed
P=datasets/checkpoints/nonlinear/probes
H=runs/heldout; C=runs/c25098.npz
if [ -z "$DRY" ]; then
  [ -f $H/target_5.npy ] || python $P/heldout_targets.py datasets/nonlinear/raw/corpus.npz $H --n 8
  [ -f $C ] || gnn-truss data pack --limit 25098 datasets/nonlinear/raw/corpus.npz $C
  mkdir -p logs
fi
lane() {
  while read -r name target corpus; do
    [ -z "$TASKS" ] || [[ " $TASKS " == *" $name "* ]] || continue
    out=runs/des_${tag}_$name$suffix
    [ -f $out/summary.json ] && continue
    cmd="gnn-truss --threads 1 design --objective match-curve --target $target --checkpoint $ck --corpus $corpus --workers 1 --seed $seed --no-progress --out $out $extra"
    if [ -n "$DRY" ]; then echo "$cmd"; else $cmd > logs/des_${tag}_$name$suffix.log 2>&1; fi
  done
}
lane <<L1 &
t0 $H/target_0.npy $H/corpus.npz
t2 $H/target_2.npy $H/corpus.npz
t4 $H/target_4.npy $H/corpus.npz
stiff1.3 stiffest*1.3 $C
stiff1.5 stiffest*1.5 $C
L1
lane <<L2
t1 $H/target_1.npy $H/corpus.npz
t3 $H/target_3.npy $H/corpus.npz
t5 $H/target_5.npy $H/corpus.npz
stiff1.15 stiffest*1.15 $C
soft softening $C
L2
wait
