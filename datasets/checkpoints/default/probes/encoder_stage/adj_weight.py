"""Probe (session 45), the control of hard_weight.py: the plain twenty-fifth stage with the adjacency term weighted K
against the others (offset and property weights divided by K; Adam hardly sees the scale).
Session 46: an optional INIT (default the shipped model.pt) chains such stages.
    python datasets/checkpoints/default/probes/encoder_stage/adj_weight.py K OUT [INIT]"""
import sys
import torch
from gnn_truss.training import load_config, train
K, OUT = float(sys.argv[1]), sys.argv[2]
INIT = sys.argv[3] if len(sys.argv) > 3 else "datasets/checkpoints/default/model.pt"
torch.set_num_threads(1)
cfg = load_config("configs/default_physloss.yaml")
cfg["train"]["init_from"] = INIT
cfg["train"]["property_weight"] = cfg["train"]["property_weight"] / K
cfg["model"]["offset_weight"] = cfg["model"].get("offset_weight", 100.0) / K
cfg["out"] = OUT
train(cfg, progress=False)
