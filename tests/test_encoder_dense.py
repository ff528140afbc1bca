"""Tests of the differentiable dense encoder path (gnn_truss.nn.encoder.forward_dense)."""
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from gnn_truss import design_space as ds
from gnn_truss.generator import generate
from gnn_truss.graph import truss_to_data
from gnn_truss.nn import build_model
from gnn_truss.nn.encoder import (dense_adjacency_input, dense_edge_features, dense_positions,
                                  message_pairs, soft_used)
from gnn_truss.truss import Truss

SMALL = {"topology": 3, "shared": 5, "geometry": 2, "hidden": 16, "layers": 2, "readout": 32,
         "mlp_hidden": [32, 32], "decoder_hidden": [16, 32], "offset_hidden": [16],
         "predictor_hidden": [16]}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def trusses():
    """Eight valid generator lattices (seeded), with offsets."""
    return generate(8, np.random.default_rng(3))


def _dense_inputs(trusses):
    adj = torch.tensor(np.stack([t.adjacency for t in trusses]), dtype=torch.float32)
    off = torch.tensor(np.stack([t.free_offsets for t in trusses]), dtype=torch.float32)
    return adj, off


@pytest.mark.parametrize("encoder, edge_readout, physics", [
    ("gnn", False, False), ("gnn", True, False), ("gnn", False, True), ("gnn", True, True),
    ("mlp", False, False)])
def test_dense_equals_sparse_on_random_lattices(trusses, encoder, edge_readout, physics):
    model = build_model({**SMALL, "encoder": encoder, "edge_readout": edge_readout,
                         "physics_readout": physics}).eval()
    batch = Batch.from_data_list([truss_to_data(t) for t in trusses])
    adj, off = _dense_inputs(trusses)
    with torch.no_grad():
        ref = model.encoder(batch)
        square = model.encoder.forward_dense(adj, off)
        triu = model.encoder.forward_dense(batch.adj, batch.offset)
        mu, logsig = model.encode(batch)
        mu_d, logsig_d = model.encode_dense(adj, off)
    for a, b, c in zip(ref, square, triu):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
        assert torch.allclose(a, c, atol=1e-5, rtol=1e-5)
    assert torch.allclose(mu, mu_d, atol=1e-5) and torch.allclose(logsig, logsig_d, atol=1e-5)


def test_all_pairs_equals_sparse_with_a_long_beam():
    """A beam outside the near-neighbour pairs (0 -> 26, length sqrt 3) is only seen with
    ``all_pairs``; then the dense path equals the sparse one for any binary adjacency."""
    t = Truss.from_edges([(0, 26), (0, 13), (13, 26), (2, 4)])
    model = build_model(SMALL).eval()
    batch = Batch.from_data_list([truss_to_data(t)])
    adj, off = _dense_inputs([t])
    with torch.no_grad():
        ref = model.encoder(batch)[0]
        full = model.encoder.forward_dense(adj, off, all_pairs=True)[0]
        near = model.encoder.forward_dense(adj, off)[0]
    assert torch.allclose(ref, full, atol=1e-5)
    assert not torch.allclose(ref, near, atol=1e-5)


def test_message_pairs_cover_every_admissible_beam():
    src, dst = message_pairs()
    assert len(src) == 2 * len(ds.NEAR_NEIGHBOUR_EDGES) == 316
    assert len(message_pairs(all_pairs=True)[0]) == 27 * 26
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert all((j, i) in pairs for i, j in pairs)  # both directions
    # no offsets in [-0.5, 0.5] bring any other pair within sqrt(3)/2
    g = np.random.default_rng(0)
    free = g.uniform(-0.5, 0.5, (2000, ds.NUM_FREE_DOFS))
    free[:1000] = np.sign(free[:1000]) * 0.5  # extreme offsets
    pos = ds.offsets_to_positions(ds.unpack_offsets(free))
    d = np.linalg.norm(pos[:, ds.TRIU_I] - pos[:, ds.TRIU_J], axis=-1).min(axis=0)
    near = {tuple(e) for e in ds.NEAR_NEIGHBOUR_EDGES.tolist()}
    other = np.array([(i, j) not in near for i, j in zip(ds.TRIU_I, ds.TRIU_J)])
    assert d[other].min() > ds.R_MAX


def test_dense_helpers_match_the_graph_features(trusses):
    adj, off = _dense_inputs(trusses)
    A = dense_adjacency_input(adj)
    i, j = torch.tensor(ds.TRIU_I), torch.tensor(ds.TRIU_J)
    assert torch.equal(A, dense_adjacency_input(A[:, i, j]))
    assert torch.equal(soft_used(A).bool(), torch.tensor(np.stack([t.used for t in trusses])))
    pos = dense_positions(off)
    assert np.allclose(pos.numpy(), np.stack([t.positions for t in trusses]), atol=1e-6)
    src, dst = (torch.as_tensor(a) for a in message_pairs())
    e = dense_edge_features(off, src, dst)
    data = truss_to_data(trusses[0])
    for (s, t), attr in zip(data.edge_index.T.tolist(), data.edge_attr):
        p = int(np.flatnonzero((src.numpy() == s) & (dst.numpy() == t))[0])
        assert torch.allclose(e[0, p], attr, atol=1e-6)


def test_soft_used_is_one_minus_product():
    A = torch.zeros(1, 27, 27)
    A[0, 0, 1] = A[0, 1, 0] = 0.5
    A[0, 0, 2] = A[0, 2, 0] = 0.5
    u = soft_used(A)[0]
    assert torch.isclose(u[0], torch.tensor(0.75)) and torch.isclose(u[1], torch.tensor(0.5))
    assert u[3] == 0


@pytest.mark.parametrize("encoder", ["gnn", "mlp"])
def test_gradients_flow_through_soft_adjacency_and_offsets(trusses, encoder):
    model = build_model({**SMALL, "encoder": encoder}).eval()
    adj, off = _dense_inputs(trusses[:3])
    logits = torch.randn(3, ds.NUM_PAIRS, requires_grad=True)
    off = off.clone().requires_grad_(True)
    mu, _ = model.encode_dense(torch.sigmoid(logits), off)
    model.predict(mu).sum().backward()
    for g in (logits.grad, off.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_no_nan_gradient_at_coincident_nodes():
    """Body node 13 moved onto vertex 0: a zero-length pair must not poison the gradient."""
    model = build_model(SMALL).eval()
    free = torch.zeros(1, ds.NUM_FREE_DOFS)
    body = np.flatnonzero(ds.FREE_DOF_NODE == 13)
    free[0, body] = -0.5
    free.requires_grad_(True)
    prob = torch.full((1, ds.NUM_PAIRS), 0.3, requires_grad=True)
    mu, _ = model.encode_dense(prob, free)
    mu.sum().backward()
    assert torch.isfinite(free.grad).all() and torch.isfinite(prob.grad).all()


@pytest.mark.parametrize("edge_readout, physics", [(False, False), (True, False),
                                                   (False, True)])
def test_dense_gradcheck_double(edge_readout, physics):
    model = build_model({**SMALL, "hidden": 6, "readout": 8, "edge_readout": edge_readout,
                         "physics_readout": physics}).double().eval()
    g = torch.Generator().manual_seed(1)
    prob = torch.rand(2, ds.NUM_PAIRS, generator=g, dtype=torch.float64).requires_grad_(True)
    off = (0.4 * torch.rand(2, ds.NUM_FREE_DOFS, generator=g, dtype=torch.float64) - 0.2) \
        .requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, o: model.encode_dense(a, o)[0], (prob, off),
                                    eps=1e-6, atol=1e-5)


def test_state_dict_keys_unchanged_by_the_dense_path():
    """The dense path adds no parameters or buffers: checkpoints stay compatible."""
    keys = set(build_model(SMALL).state_dict())
    expected_prefixes = ("encoder.embed.", "encoder.convs.", "encoder.norms.",
                         "encoder.readout.", "encoder.heads.", "adj_decoder.",
                         "offset_decoder.", "predictor.")
    assert all(k.startswith(expected_prefixes) for k in keys)
    conv_keys = {k.split(".", 3)[-1] for k in keys if k.startswith("encoder.convs.0.")}
    assert conv_keys == {"eps", "nn.0.weight", "nn.0.bias", "nn.2.weight", "nn.2.bias",
                         "lin.weight", "lin.bias"}


def test_edge_readout_reads_the_adjacency(trusses):
    """With ``edge_readout`` the readout's input is the node embeddings then the 351 entries."""
    model = build_model({**SMALL, "edge_readout": True}).eval()
    first = model.encoder.readout[0]
    assert first.in_features == 27 * SMALL["hidden"] + ds.NUM_PAIRS
    batch = Batch.from_data_list([truss_to_data(t) for t in trusses])
    seen = {}
    hook = first.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    with torch.no_grad():
        model.encoder(batch)
    hook.remove()
    assert torch.equal(seen["x"][:, -ds.NUM_PAIRS:], batch.adj)
    with pytest.raises(ValueError, match="model.edge_readout must be true or false"):
        build_model({**SMALL, "edge_readout": "yes"})


def test_physics_readout_reads_the_fabric(trusses):
    """With ``physics_readout`` the readout's last 13 inputs are the physics features of the
    lattice, and they change the latent (the encoder sees the fabric); the MLP refuses it."""
    from gnn_truss.nn.features import NUM_PHYSICS_FEATURES, physics_features

    model = build_model({**SMALL, "physics_readout": True}).eval()
    first = model.encoder.readout[0]
    assert first.in_features == 27 * SMALL["hidden"] + NUM_PHYSICS_FEATURES
    batch = Batch.from_data_list([truss_to_data(t) for t in trusses])
    seen = {}
    hook = first.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    with torch.no_grad():
        mu = model.encode(batch)[0]
        first.weight[:, -NUM_PHYSICS_FEATURES:] = 0.0
        mu_blind = model.encode(batch)[0]
    hook.remove()
    assert torch.allclose(seen["x"][:, -NUM_PHYSICS_FEATURES:],
                          physics_features(batch.adj, batch.offset))
    assert not torch.allclose(mu, mu_blind)
    with pytest.raises(ValueError, match="model.physics_readout must be true or false"):
        build_model({**SMALL, "physics_readout": 1})
    with pytest.raises(ValueError, match="physics_readout needs the GNN encoder"):
        build_model({**SMALL, "encoder": "mlp", "physics_readout": True})


def test_bad_shapes_raise():
    model = build_model(SMALL)
    with pytest.raises(ValueError, match="adjacency"):
        model.encode_dense(torch.zeros(2, 10), torch.zeros(2, 27))
    with pytest.raises(ValueError, match="offsets"):
        model.encode_dense(torch.zeros(2, 351), torch.zeros(2, 26))
