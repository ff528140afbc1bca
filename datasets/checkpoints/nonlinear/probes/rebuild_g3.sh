#!/bin/bash
# Probe helper (session 37): rebuild the 29,698-curve G of session 36 (runs/nl_pfx3_drop/best.pt)
# through its four stages, each step skipped once done, so it resumes after a stop:
#   bash datasets/checkpoints/nonlinear/probes/rebuild_g3.sh   (about 70 min on two threads)
# This G (G3) was the shipped curve checkpoint in sessions 40-43; since session 44 the shipped one
# is G3 trained on for 60 epochs on the whole grown corpus (configs/nonlinear_grown.yaml, G5),
# the fifth step below (about 35 min on one thread), and ship_curve_model.py writes it there.
# The first stage starts from the curve checkpoint shipped before G3 (git 7ac7454), read from
# git here.
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
# the fourth stage reads the shipped corpus itself (its first 29,698 curves, data.limit; the
# session-36 run read a copy in runs/nl_pfx3 through probes/nonlinear_prefix_dropout3.yaml, the
# same data)
[ -f runs/nl_pfx3_drop/best.pt.done ] || { gnn-truss --threads 2 train --config configs/nonlinear_prefix.yaml; touch runs/nl_pfx3_drop/best.pt.done; }
# the fifth: all 39,996 curves, from G3 (the shipped G3 itself: git show 06fdd57:datasets/
# checkpoints/nonlinear/model.pt > runs/nonlinear_g3.pt before running this, else the rebuild)
[ -s runs/nonlinear_g3.pt ] || cp runs/nl_pfx3_drop/best.pt runs/nonlinear_g3.pt
[ -f runs/nl_g5/best.pt.done ] || { gnn-truss --threads 2 train --config configs/nonlinear_grown.yaml; touch runs/nl_g5/best.pt.done; }
echo "chain done: python $P/ship_curve_model.py runs/nl_g5/best.pt writes it to the shipped checkpoint"
