#!/bin/bash
# Probe helper (session 37): rebuild the 29,698-curve G of session 36 (runs/nl_pfx3_drop/best.pt)
# through its four stages, each step skipped once done, so it resumes after a stop:
#   bash datasets/checkpoints/nonlinear/probes/rebuild_g3.sh   (about 70 min on two threads)
# Since session 40 this G is the shipped curve checkpoint (ship_g3.py writes it there). Its first
# stage starts from the curve checkpoint shipped before it (git 7ac7454), read from git here.
set -e
P=datasets/checkpoints/nonlinear/probes
B=datasets/nonlinear/raw/corpus.npz
G0=runs/nonlinear_g_shipped.pt
mkdir -p runs
[ -s $G0 ] || { git show 7ac7454:datasets/checkpoints/nonlinear/model.pt > $G0.tmp && mv $G0.tmp $G0; }
[ -f runs/nlb_drop/best.pt.done ] || { gnn-truss --threads 2 train --config $P/nonlinear_dropout.yaml --init-from $G0; touch runs/nlb_drop/best.pt.done; }
for spec in "nl_pfx 24098 nonlinear_prefix_dropout nl_pfx_drop" "nl_pfx2 25098 nonlinear_prefix_dropout2 nl_pfx2_drop"; do
  set -- $spec
  [ -f runs/$4/best.pt.done ] && continue
  mkdir -p runs/$1/raw
  [ -f runs/$1/raw/corpus.npz ] || gnn-truss data pack --limit $2 $B runs/$1/raw/corpus.npz
  cp -n datasets/nonlinear/buckling.npz runs/$1/buckling.npz
  gnn-truss --threads 2 train --config $P/$3.yaml
  touch runs/$4/best.pt.done
done
# the last stage reads the shipped corpus itself (all 29,698 curves; the session-36 run read a
# copy in runs/nl_pfx3 through probes/nonlinear_prefix_dropout3.yaml, the same data)
[ -f runs/nl_pfx3_drop/best.pt.done ] || { gnn-truss --threads 2 train --config configs/nonlinear_prefix.yaml; touch runs/nl_pfx3_drop/best.pt.done; }
echo "chain done: python $P/ship_g3.py writes runs/nl_pfx3_drop/best.pt to the shipped checkpoint"
