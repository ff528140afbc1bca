#!/bin/bash
# Probe helper (session 37): rebuild the 29,698-curve G of session 36 (runs/nl_pfx3_drop/best.pt)
# through its four probe configs, each step skipped once done, so it resumes after a stop:
#   bash datasets/checkpoints/nonlinear/probes/rebuild_g3.sh   (about 70 min on two threads)
set -e
P=datasets/checkpoints/nonlinear/probes
B=datasets/nonlinear/build.npz
[ -f runs/nlb_drop/best.pt.done ] || { gnn-truss --threads 2 train --config $P/nonlinear_dropout.yaml; touch runs/nlb_drop/best.pt.done; }
for spec in "nl_pfx 24098 nonlinear_prefix_dropout nl_pfx_drop" "nl_pfx2 25098 nonlinear_prefix_dropout2 nl_pfx2_drop" "nl_pfx3 29698 nonlinear_prefix_dropout3 nl_pfx3_drop"; do
  set -- $spec
  [ -f runs/$4/best.pt.done ] && continue
  mkdir -p runs/$1/raw
  [ -f runs/$1/raw/corpus.npz ] || gnn-truss data pack --limit $2 $B runs/$1/raw/corpus.npz
  cp -n datasets/nonlinear/buckling.npz runs/$1/buckling.npz
  gnn-truss --threads 2 train --config $P/$3.yaml
  touch runs/$4/best.pt.done
done
echo chain done
