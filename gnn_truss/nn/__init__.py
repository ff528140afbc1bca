"""Neural networks: encoders, decoders, property predictor and the graph VAE."""
from .decoder import AdjacencyDecoder, OffsetDecoder
from .encoder import MLPEncoder, TrussGNNEncoder
from .predictor import GraphPropertyPredictor, PropertyPredictor
from .vae import LatentSizes, TrussVAE, build_model, refine_latent

__all__ = ["AdjacencyDecoder", "OffsetDecoder", "MLPEncoder", "TrussGNNEncoder",
           "PropertyPredictor", "GraphPropertyPredictor", "LatentSizes", "TrussVAE",
           "build_model", "refine_latent"]
