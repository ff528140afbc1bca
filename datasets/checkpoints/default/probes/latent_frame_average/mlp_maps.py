"""Stage 3: a g-conditioned MLP T(mu_g, g) -> latent of x, trained through the frozen decoder
(reconstruction loss of x), initialised near identity for g = e. Evaluated per copy and averaged."""
import sys, time
import torch
import torch.nn.functional as F
from gnn_truss.exploration import load_model

torch.manual_seed(0)
torch.set_num_threads(1)
ntr, nte, epochs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
model, ck = load_model("datasets/checkpoints/default/model.pt"); model.eval()
for p in model.parameters():
    p.requires_grad_(False)
tr = torch.load(f"runs/probe47/mu_train{ntr}.pt"); te = torch.load(f"runs/probe47/mu_test{nte}.pt")
G, D = tr["mu"].shape[0], tr["mu"].shape[2]
T = torch.nn.Sequential(torch.nn.Linear(D + G, 512), torch.nn.SiLU(), torch.nn.Linear(512, 512),
                        torch.nn.SiLU(), torch.nn.Linear(512, D))
opt = torch.optim.Adam(T.parameters(), lr=1e-3)
w = model.offset_weight
eye = torch.eye(G)

def apply(mu, g):
    return mu if False else T(torch.cat([mu, eye[g].expand(len(mu), G)], 1))

def exact(z, adj):
    with torch.no_grad():
        logits, _ = model.decode(z)
    return float(((logits > 0).float() == adj).all(1).float().mean())

steps = epochs * (ntr * G) // 512
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
t0 = time.time()
for ep in range(epochs):
    perm = torch.randperm(ntr * G)
    tot = 0.0
    for s in range(0, ntr * G, 512):
        idx = perm[s:s + 512]
        g, i = idx // ntr, idx % ntr
        z = T(torch.cat([tr["mu"][g, i], eye[g]], 1))
        logits, off = model.decode(z)
        loss = F.binary_cross_entropy_with_logits(logits, tr["adj"][i], reduction="none").sum(-1).mean() \
            + w * ((off - tr["offset"][i]) ** 2).sum(-1).mean()
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        tot += float(loss) * len(idx)
    with torch.no_grad():
        zt = torch.stack([apply(te["mu"][g], g) for g in range(G)])
        single = [exact(zt[g], te["adj"]) for g in (0, 1, 7, 20, 47)]
        avg = exact(zt.mean(0), te["adj"])
        trs = exact(apply(tr["mu"][5, :4000], 5), tr["adj"][:4000])
    print(f"epoch {ep} loss {tot / (ntr * G):.3f} test single copies {single} avg48 {avg:.4f} "
          f"train copy5 {trs:.4f} {time.time() - t0:.0f}s", flush=True)
