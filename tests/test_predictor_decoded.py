"""Tests of the property predictor that reads the decoded lattice
(model.predictor_input 'decoded': gnn_truss.nn.predictor.GraphPropertyPredictor and
TrussVAE.predict / decode_lattice)."""
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from gnn_truss import design_space as ds
from gnn_truss.generator import generate
from gnn_truss.graph import truss_to_data
from gnn_truss.nn import GraphPropertyPredictor, build_model
from gnn_truss.truss import Truss

SMALL = {"topology": 3, "shared": 5, "geometry": 2, "hidden": 16, "layers": 2, "readout": 32,
         "decoder_hidden": [16, 32], "offset_hidden": [16], "edge_readout": True,
         "physics_readout": True}
DECODED = {**SMALL, "predictor_input": "decoded", "predictor_gnn_hidden": 16,
           "predictor_gnn_layers": 2, "predictor_gnn_readout": 32}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def trusses():
    """Six valid generator lattices (seeded)."""
    return generate(6, np.random.default_rng(5))


def _pinned_decoder(model, truss: Truss) -> None:
    """Make the decoders output ``truss`` whatever the latent: zero final weights, the final
    biases set to adjacency logits of +-6 and to the offsets' pre-activations."""
    adj_out, off_out = model.adj_decoder.net[-1], model.offset_decoder.net[-1]
    triu = torch.tensor(truss.adjacency[ds.TRIU_I, ds.TRIU_J], dtype=torch.float32)
    free = torch.tensor(truss.free_offsets, dtype=torch.float32)
    with torch.no_grad():
        adj_out.weight.zero_()
        adj_out.bias.copy_(6.0 * (2.0 * triu - 1.0))
        off_out.weight.zero_()
        off_out.bias.copy_(torch.atanh(2.0 * free))


@pytest.mark.parametrize("edge_readout, physics", [(False, False), (True, True)])
def test_graph_predictor_dense_equals_sparse(trusses, edge_readout, physics):
    net = GraphPropertyPredictor(9, hidden=16, layers=2, readout=32, edge_readout=edge_readout,
                                 physics_readout=physics).eval()
    batch = Batch.from_data_list([truss_to_data(t) for t in trusses])
    adj = torch.tensor(np.stack([t.adjacency for t in trusses]), dtype=torch.float32)
    off = torch.tensor(np.stack([t.free_offsets for t in trusses]), dtype=torch.float32)
    with torch.no_grad():
        sparse = net(batch)
        dense = net.forward_dense(adj, off)
    assert sparse.shape == (len(trusses), 9)
    assert torch.allclose(sparse, dense, atol=1e-5, rtol=1e-5)
    assert sparse.std(0).min() > 0  # it tells the lattices apart


def test_decoded_predict_is_the_predictor_on_the_decoded_lattice(trusses):
    """predict(mu) = G(graph of the lattice the decoders give for mu), the graph built by
    gnn_truss.graph from a Truss (an independent featurisation of the dense path's)."""
    model = build_model(DECODED).eval()
    for truss in trusses[:4]:
        _pinned_decoder(model, truss)
        mu = torch.randn(3, model.sizes.total)
        used = truss.used[ds.FREE_DOF_NODE]
        expect_lattice = Truss(truss.adjacency).with_offsets(
            np.where(used, truss.free_offsets, 0.0))
        with torch.no_grad():
            A, offsets, used_soft = model.decode_lattice(mu)
            got = model.predict(mu)
            ref = model.predictor(Batch.from_data_list([truss_to_data(expect_lattice)]))
        assert torch.equal(A[0], torch.tensor(truss.adjacency, dtype=torch.float32))
        assert torch.equal(used_soft[0] > 0.5, torch.tensor(truss.used))
        assert torch.allclose(offsets[0].double(), torch.tensor(expect_lattice.free_offsets),
                              atol=1e-5)
        assert torch.allclose(got, ref.expand_as(got), atol=1e-5, rtol=1e-5)


def test_decoded_predict_is_differentiable_in_mu():
    model = build_model(DECODED)
    mu = torch.randn(5, model.sizes.total, requires_grad=True)
    model.predict(mu).square().sum().backward()
    assert torch.isfinite(mu.grad).all() and mu.grad.abs().sum() > 0
    # the predictor's own parameters learn from it too
    assert model.predictor.heads.weight.grad.abs().sum() > 0


def test_forward_predict_from_graph_or_latent(trusses):
    model = build_model(DECODED).eval()
    batch = Batch.from_data_list([truss_to_data(t) for t in trusses])
    with torch.no_grad():
        on_graph = model(batch, sample=False, predict_from="graph")
        on_latent = model(batch, sample=False)
        direct = model.predictor(batch)
        via_mu = model.predict(on_latent["mu"])
    assert torch.equal(on_graph["pred"], direct)
    assert torch.equal(on_latent["pred"], via_mu)
    assert not torch.allclose(on_graph["pred"], on_latent["pred"])  # untrained decoder
    latent_model = build_model(SMALL)
    with pytest.raises(ValueError, match="predictor_input 'decoded'"):
        latent_model(batch, predict_from="graph")
    with pytest.raises(ValueError, match="predict_from"):
        model(batch, predict_from="lattice")


def test_decode_lattice_relaxations():
    model = build_model(SMALL)
    z = torch.randn(4, model.sizes.total)
    A_st, off_st, used_st = model.decode_lattice(z)
    A_soft, _, _ = model.decode_lattice(z, "soft")
    logits, raw = model.decode(z)
    assert set(torch.unique(A_st).tolist()) <= {0.0, 1.0}
    i, j = torch.tensor(ds.TRIU_I), torch.tensor(ds.TRIU_J)
    assert torch.allclose(A_soft[:, i, j], torch.sigmoid(logits))
    assert torch.equal(A_st, A_st.transpose(1, 2))
    unused = (used_st < 0.5)[:, torch.tensor(ds.FREE_DOF_NODE)]
    assert torch.all(off_st[unused] == 0)
    assert torch.equal(off_st[~unused], raw[~unused])
    with pytest.raises(ValueError, match="relax"):
        model.decode_lattice(z, "hard")


def test_predictor_dropout_acts_in_training_only(trusses):
    """``model.predictor_dropout`` drops readout units of G in training; in evaluation G is
    the same function as without it (same weights), so a warm start keeps the function."""
    batch = Batch.from_data_list([truss_to_data(t) for t in trusses])
    plain = build_model(DECODED)
    drop = build_model({**DECODED, "predictor_dropout": 0.5})
    drop.load_state_dict(plain.state_dict())  # no parameters added
    G0, G1 = plain.predictor, drop.predictor
    with torch.no_grad():
        y0 = G0.eval()(batch)
        assert torch.equal(G1.eval()(batch), y0)
        torch.manual_seed(0)
        a = G1.train()(batch)
        b = G1(batch)
        assert torch.equal(G0.train()(batch), y0)  # no dropout: training mode changes nothing
    assert not torch.allclose(a, y0) and not torch.allclose(a, b)  # random masks
    with pytest.raises(ValueError, match="dropout"):
        GraphPropertyPredictor(9, dropout=1.0)


def test_num_targets_of_both_predictors():
    assert build_model(SMALL).num_targets == 9
    assert build_model({**DECODED, "num_targets": 13}).num_targets == 13
    assert build_model({**SMALL, "num_targets": 13, "predictor_hidden": [8]}).num_targets == 13


@pytest.mark.parametrize("extra, match", [
    ({"predictor_input": "graph"}, "model.predictor_input"),
    ({"predictor_gnn_layers": 2}, "model.predictor_gnn_layers"),
    ({"predictor_input": "decoded", "predictor_hidden": [16]}, "model.predictor_hidden"),
    ({"predictor_input": "decoded", "predictor_gnn_hidden": 0}, "model.predictor_gnn_hidden"),
    ({"predictor_input": "decoded", "predictor_gnn_readout": 2.5},
     "model.predictor_gnn_readout"),
    ({"predictor_input": "decoded", "predictor_dropout": 1.0}, "model.predictor_dropout"),
    ({"predictor_input": "decoded", "predictor_dropout": -0.1}, "model.predictor_dropout"),
    ({"predictor_input": "decoded", "predictor_dropout": True}, "model.predictor_dropout"),
    ({"predictor_dropout": 0.1}, "model.predictor_dropout"),  # the latent MLP has none
])
def test_build_model_rejects_bad_predictor_settings(extra, match):
    with pytest.raises(ValueError, match=match):
        build_model({**SMALL, **extra})


def test_decoded_model_needs_a_lattice_predictor():
    from gnn_truss.nn import TrussVAE
    model = build_model(SMALL)
    with pytest.raises(ValueError, match="forward_dense"):
        TrussVAE(model.encoder, model.adj_decoder, model.offset_decoder, model.predictor,
                 model.sizes, predictor_input="decoded")


def test_decoded_predict_drops_pairs_that_can_never_be_beams():
    """A decoded pair outside the near-neighbour pairs (0 -> 26, length sqrt 3 whatever the
    offsets) is not part of the lattice the predictor reads: predict equals G on the lattice
    without it (whose node 26 is then unused)."""
    model = build_model(DECODED).eval()
    with_long = Truss.from_edges([(0, 1), (1, 4), (4, 0), (0, 26), (25, 26), (22, 26),
                                  (22, 25)])
    _pinned_decoder(model, with_long)
    near = ds.edges_to_adjacency(ds.NEAR_NEIGHBOUR_EDGES)
    kept = Truss(with_long.adjacency & near)
    assert kept.num_edges == with_long.num_edges - 1
    with torch.no_grad():
        got = model.predict(torch.zeros(1, model.sizes.total))
        ref = model.predictor(Batch.from_data_list([truss_to_data(kept)]))
        full = model.predictor(Batch.from_data_list([truss_to_data(with_long)]))
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, full, atol=1e-4)
