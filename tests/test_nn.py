"""Tests of gnn_truss.nn: encoders, decoders, predictor and the graph VAE."""
import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from gnn_truss import design_space as ds
from gnn_truss.graph import truss_to_data
from gnn_truss.nn import (
    AdjacencyDecoder,
    LatentSizes,
    MLPEncoder,
    OffsetDecoder,
    TrussGNNEncoder,
    TrussVAE,
    build_model,
)
from gnn_truss.nn.vae import LOGSIG_MAX, LOGSIG_MIN
from gnn_truss.truss import Truss

T, S, G = 3, 5, 2
SMALL = {"topology": T, "shared": S, "geometry": G, "hidden": 16, "layers": 2, "readout": 32,
         "mlp_hidden": [32, 32], "decoder_hidden": [16, 32], "offset_hidden": [16],
         "predictor_hidden": [16]}


@pytest.fixture(autouse=True)
def _seed_one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def batch():
    """The six elementary lattices, free offsets of used nodes set at random (seeded)."""
    g = np.random.default_rng(0)
    data = []
    for name in ds.SEED_LATTICES:
        t = Truss.elementary(name)
        free = np.where(t.used[ds.FREE_DOF_NODE], g.uniform(-0.2, 0.2, 27), 0.0)
        data.append(truss_to_data(t.with_offsets(free), stiffness=g.uniform(0.01, 0.1, 9)))
    b = Batch.from_data_list(data)
    b.y = torch.randn(len(data), 9)
    return b


@pytest.mark.parametrize("encoder", ["gnn", "mlp"])
def test_encoder_and_model_shapes(batch, encoder):
    model = build_model({**SMALL, "encoder": encoder})
    enc_cls = TrussGNNEncoder if encoder == "gnn" else MLPEncoder
    assert isinstance(model.encoder, enc_cls)
    mu_a, ls_a, mu_x, ls_x = model.encoder(batch)
    B = batch.num_graphs
    assert mu_a.shape == ls_a.shape == (B, T + S)
    assert mu_x.shape == ls_x.shape == (B, S + G)
    out = model(batch)
    assert out["mu"].shape == out["logsig"].shape == out["z"].shape == (B, T + S + G)
    assert out["logits"].shape == (B, ds.NUM_PAIRS)
    assert out["offsets"].shape == (B, ds.NUM_FREE_DOFS)
    assert out["pred"].shape == (B, 9)
    loss = model.loss(out, batch, beta=0.5)
    assert torch.isfinite(loss["total"])
    loss["total"].backward()
    assert all(p.grad is not None for p in model.encoder.parameters() if p.requires_grad)


def test_gnn_encoder_uses_the_graph_structure(batch):
    enc = TrussGNNEncoder(T + S, S + G, hidden=16, layers=2, readout=32).eval()
    ref = enc(batch)[0]
    b2 = batch.clone()
    b2.edge_attr = b2.edge_attr + 0.1
    assert not torch.allclose(enc(b2)[0], ref)


def test_adjacency_decoder_dense_is_symmetric_with_minus_inf_diagonal():
    dec = AdjacencyDecoder(T + S, hidden=(16, 32))
    logits = dec(torch.randn(4, T + S))
    assert logits.shape == (4, ds.NUM_PAIRS)
    dense = dec.dense(logits)
    assert dense.shape == (4, 27, 27)
    assert torch.equal(dense, dense.transpose(1, 2))
    assert torch.all(torch.isneginf(torch.diagonal(dense, dim1=1, dim2=2)))
    off = ~torch.eye(27, dtype=torch.bool)
    assert torch.isfinite(dense[:, off]).all()
    i, j = torch.as_tensor(ds.TRIU_I.copy()), torch.as_tensor(ds.TRIU_J.copy())
    assert torch.equal(dense[:, i, j], logits)


def test_offsets_bounded_by_half():
    dec = OffsetDecoder(S + G, hidden=(16,))
    out = dec(1e3 * torch.randn(256, S + G))
    assert out.shape == (256, 27)
    assert out.abs().max() <= 0.5
    assert out.abs().max() > 0.49  # the bound is reached, not a narrower range


def test_merge_layout_by_hand():
    model = build_model({**SMALL, "topology": 2, "shared": 3, "geometry": 1})
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])  # 2 topology-specific + 3 shared
    x = torch.tensor([[10.0, 20.0, 30.0, 40.0]])   # 3 shared + 1 geometry-specific
    assert torch.equal(model.merge(a, x), torch.tensor([[1.0, 2.0, 6.5, 12.0, 17.5, 40.0]]))


def test_encode_merges_mu_and_logsig_and_clamps(batch):
    model = build_model(SMALL)
    mu_a = torch.arange(T + S, dtype=torch.float).expand(6, -1)
    mu_x = 100 + torch.arange(S + G, dtype=torch.float).expand(6, -1)
    ls_a = torch.full((6, T + S), -30.0)
    ls_x = torch.full((6, S + G), 30.0)
    model.encoder.forward = lambda b: (mu_a, ls_a, mu_x, ls_x)
    mu, logsig = model.encode(batch)
    assert torch.equal(mu, model.merge(mu_a, mu_x))
    assert torch.all(logsig[:, :T] == LOGSIG_MIN) and torch.all(logsig[:, T + S:] == LOGSIG_MAX)
    assert torch.all(logsig[:, T:T + S] == 0.0)  # (-30 + 30) / 2


def test_reparameterization_std_is_exp_logsig_and_noise_independent():
    torch.manual_seed(1)
    n = 200_000
    mu = torch.tensor([1.0, -2.0, 0.5])
    logsig = torch.tensor([math.log(0.5), math.log(2.0), -1.0])
    z = TrussVAE.reparameterize(mu.expand(n, 3), logsig.expand(n, 3))
    assert torch.allclose(z.mean(0), mu, atol=0.02)
    assert torch.allclose(z.std(0), torch.exp(logsig), rtol=0.01)
    corr = torch.corrcoef(z.T)
    assert (corr - torch.eye(3)).abs().max() < 0.01


def test_kl_loss_closed_form():
    g = torch.Generator().manual_seed(0)
    mu, logsig = torch.randn(4, 7, generator=g), 0.5 * torch.randn(4, 7, generator=g)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, torch.exp(logsig)),
        torch.distributions.Normal(torch.zeros(()), torch.ones(()))).sum(-1).mean()
    assert torch.allclose(TrussVAE.kl_loss(mu, logsig), ref, atol=1e-6)
    zero = torch.zeros(3, 7)
    assert TrussVAE.kl_loss(zero, zero) == 0.0
    # one dim, mu = 1, sigma = e: 0.5 * (e^2 + 1 - 1 - 2)
    one = TrussVAE.kl_loss(torch.ones(1, 1), torch.ones(1, 1))
    assert float(one) == pytest.approx(0.5 * (math.e**2 - 2))


def test_decoders_read_only_their_latent_dims():
    model = build_model(SMALL).eval()
    z = torch.randn(5, T + S + G)
    logits, offsets = model.decode(z)
    zg = z.clone()
    zg[:, T + S:] += 3.0  # geometry-specific dims
    lg, og = model.decode(zg)
    assert torch.equal(lg, logits) and not torch.allclose(og, offsets)
    zt = z.clone()
    zt[:, :T] += 3.0  # topology-specific dims
    lt, ot = model.decode(zt)
    assert torch.equal(ot, offsets) and not torch.allclose(lt, logits)
    zs = z.clone()
    zs[:, T:T + S] += 3.0  # shared dims reach both decoders
    ls, os_ = model.decode(zs)
    assert not torch.allclose(ls, logits) and not torch.allclose(os_, offsets)


def test_predictor_reads_mu_not_the_sample(batch):
    model = build_model(SMALL).train()
    a, b = model(batch, sample=True), model(batch, sample=True)
    assert not torch.equal(a["z"], b["z"])  # sampling happened
    assert torch.equal(a["pred"], b["pred"])
    assert torch.equal(a["pred"], model.predict(a["mu"]))
    c = model(batch, sample=False)
    assert torch.equal(c["z"], c["mu"])


def test_loss_terms_by_hand(batch):
    model = build_model({**SMALL, "offset_weight": 3.0})
    out = model(batch, sample=False)
    parts = model.loss(out, batch, beta=0.25, property_weight=2.0)
    p = torch.sigmoid(out["logits"])
    bce = -(batch.adj * torch.log(p) + (1 - batch.adj) * torch.log(1 - p)).sum(-1).mean()
    assert torch.allclose(parts["adj"], bce, rtol=1e-4)
    assert torch.allclose(parts["offset"], ((out["offsets"] - batch.offset) ** 2).sum(-1).mean())
    assert torch.allclose(parts["property"], ((out["pred"] - batch.y) ** 2).sum(-1).mean())
    total = parts["adj"] + 3.0 * parts["offset"] + 2.0 * parts["property"] + 0.25 * parts["kl"]
    assert torch.allclose(parts["total"], total)


def test_build_model_rejects_bad_config():
    with pytest.raises(ValueError, match="hiden"):
        build_model({"hiden": 64})
    with pytest.raises(ValueError, match="encoder"):
        build_model({"encoder": "transformer"})
    with pytest.raises(ValueError, match="latent sizes"):
        build_model({"topology": -1})
    model = build_model({"encoder": "mlp", "num_targets": 13})
    assert model.sizes == LatentSizes(8, 32, 8)
    assert model.predictor.net[-1].out_features == 13


# ------------------------------------------------------------------ latent refinement
def _reachable_target(model, n=6, seed=1):
    """Lattices the decoder can produce exactly: the threshold decoding of random latents."""
    g = torch.Generator().manual_seed(seed)
    z_star = torch.randn(n, model.sizes.total, generator=g)
    with torch.no_grad():
        logits, off = model.decode(z_star)
    return z_star, (logits > 0).float(), off


def test_refine_latent_lowers_each_lattice_loss_and_leaves_the_model_alone():
    """From a start 1.5 units away from latents whose decodings are the targets, refinement
    lowers every lattice's reconstruction loss (the quantity it minimises, computed here
    independently; an untrained decoder is nearly flat, so by a few units), and leaves the
    weights, their gradients and gradient flags and the train/eval mode as they were."""
    from gnn_truss.nn.vae import refine_latent
    model = build_model({"encoder": "mlp", **SMALL})
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    z_star, adj, off = _reachable_target(model)
    g = torch.Generator().manual_seed(2)
    z0 = z_star + 1.5 * torch.randn(z_star.shape, generator=g)

    def losses(z):
        with torch.no_grad():
            lg, o = model.eval().decode(z)
        model.train()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(lg, adj, reduction="none")
        return bce.sum(-1) + model.offset_weight * ((o - off) ** 2).sum(-1)
    z = refine_latent(model, z0, adj, off, steps=100, lr=0.01)
    assert not z.requires_grad and model.training  # before losses(), which sets the mode
    assert all(p.grad is None for p in model.parameters())
    assert (losses(z) < losses(z0) - 1.0).all()
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_refine_latent_is_per_lattice_and_zero_steps_is_the_start():
    from gnn_truss.nn.vae import refine_latent
    model = build_model({"encoder": "mlp", **SMALL}).eval()
    z_star, adj, off = _reachable_target(model, n=4)
    z0 = z_star + 0.5
    assert torch.equal(refine_latent(model, z0, adj, off, steps=0), z0)
    together = refine_latent(model, z0, adj, off, steps=20)
    alone = torch.cat([refine_latent(model, z0[i:i + 1], adj[i:i + 1], off[i:i + 1], steps=20)
                       for i in range(4)])
    assert torch.allclose(together, alone, atol=1e-5)
    assert not torch.equal(together, z0)


@pytest.mark.parametrize("kw, match", [
    ({"steps": -1}, "steps"), ({"steps": 2.5}, "steps"), ({"lr": 0.0}, "lr"),
    ({"lr": float("nan")}, "lr"), ({"lr": True}, "lr"), ({"z0": "nan"}, "z0"),
    ({"offsets": "nan"}, "offsets"),
    ({"z0": "short"}, "z0 must have shape"), ({"adj": "short"}, "decoder's shapes"),
])
def test_refine_latent_rejects_bad_input(kw, match):
    from gnn_truss.nn.vae import refine_latent
    model = build_model({"encoder": "mlp", **SMALL}).eval()
    z, adj, off = _reachable_target(model, n=2)
    args = {"z0": z, "adj": adj, "offsets": off, "steps": 3, "lr": 0.01}
    for k, v in kw.items():
        if v == "nan":
            args[k] = args[k].clone()
            args[k][0, 0] = float("nan")
        elif v == "short":
            args[k] = args[k][:, :-1]
        else:
            args[k] = v
    with pytest.raises(ValueError, match=match):
        refine_latent(model, **args)


def test_check_refine_settings():
    from gnn_truss.nn.vae import check_refine
    assert check_refine(None) == 0 and check_refine(0) == 0
    assert check_refine(np.int64(7), np.float32(0.02)) == 7
    for steps in (-1, 2.5, True, "10"):
        with pytest.raises(ValueError, match="encode_refine must be an integer >= 0"):
            check_refine(steps, name="encode_refine")
    for lr in (0, -0.1, float("inf"), True, "0.01"):
        with pytest.raises(ValueError, match="step size of --refine-latent"):
            check_refine(5, lr, name="--refine-latent")


def test_latent_sizes_from_config_fills_the_defaults():
    from gnn_truss.nn.vae import LatentSizes
    assert LatentSizes.from_config({}) == LatentSizes(8, 32, 8)
    assert LatentSizes.from_config({"shared": 4, "geometry": 2}) == LatentSizes(8, 4, 2)
    with pytest.raises(ValueError, match="invalid latent sizes"):
        LatentSizes.from_config({"topology": 0, "shared": 0, "geometry": 0})
