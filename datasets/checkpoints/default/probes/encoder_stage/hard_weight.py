"""Probe (session 45, not put in the package): the twenty-fifth stage of configs/default_physloss.yaml from the shipped
checkpoint, with each training lattice's adjacency loss weighted by 1 + W where its sampled
decoding is not exact (validation unweighted). Compare val_exact with the plain stage 25
(datasets/checkpoints/default/stage27/metrics_finetune25.csv: same start, seed and data).
    python datasets/checkpoints/default/probes/encoder_stage/hard_weight.py W OUT"""
import sys
import torch
import torch.nn.functional as F
from gnn_truss.nn.vae import TrussVAE
from gnn_truss.training import load_config, train

W, OUT = float(sys.argv[1]), sys.argv[2]
torch.set_num_threads(1)


def recon_loss(self, out, batch):
    bce = F.binary_cross_entropy_with_logits(out["logits"], batch.adj, reduction="none").sum(-1)
    se = ((out["offsets"] - batch.offset) ** 2).sum(-1)
    if self.training:
        with torch.no_grad():
            wrong = ((out["logits"] > 0).float() != batch.adj).any(-1).float()
            w = 1.0 + W * wrong
            w = w / w.mean()  # same mean weight: the step size is not what changes
        return (w * bce).mean(), se.mean()
    return bce.mean(), se.mean()


TrussVAE.recon_loss = recon_loss
cfg = load_config("configs/default_physloss.yaml")
cfg["train"]["init_from"] = "datasets/checkpoints/default/model.pt"
cfg["out"] = OUT
train(cfg, progress=False)
