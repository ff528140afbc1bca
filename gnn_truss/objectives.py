r"""Design objectives: what :mod:`gnn_truss.design` optimises.

An :class:`Objective` maximises or minimises one property of
:func:`gnn_truss.properties.all_properties` (``max-E22``, ``min-nu21``, ``max-KV_GV`` ...),
matches a target stiffness (a 9-vector or a set of engineering constants) or matches a target
13-point compression curve (NRMSE, Zheng et al. 2023). Every objective is a *score*, lower is
better, computed by the same function from predicted labels (torch, differentiable, used in the
optimisation loop) and from FE labels (numpy, used for the ranking).

Named curve targets (:func:`curve_target`) build the paper's two benchmark curves from a
corpus: ``stiffest*1.3`` (30 % above the stiffest corpus curve) and ``softening`` (a peak at
4.5 % strain, then a steady drop).

Units: stiffness components and moduli in units of the base Young's modulus E_s, stresses in
E_s, Poisson's ratios, ``A_U``, ``KV_GV`` and errors dimensionless. Shapes: stiffness labels
``[..., 9]`` (C11, C12, C13, C22, C23, C33, C44, C55, C66); curve labels ``[..., 13]``
(nominal compressive stress at 0.5 %, 2.5 %, ..., 24.5 % strain).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .properties import (_averages, _compliance_unchecked, _engineering_from_compliance,
                         all_properties, property_names, stiffness_from_vector)

__all__ = ["PROPERTY_ALIASES", "canonical_property", "Objective", "parse_objective",
           "load_target", "property_table", "curve_target", "is_curve_target_name",
           "CURVE_TARGETS", "CURVE_STRAINS"]

#: The paper's index notation and other spellings -> names of :func:`property_names`.
PROPERTY_ALIASES = {
    "E11": "E1", "E22": "E2", "E33": "E3", "G32": "G23", "G13": "G31", "G21": "G12",
    "G44": "G23", "G55": "G31", "G66": "G12", "KV": "K_V", "GV": "G_V", "KR": "K_R",
    "GR": "G_R", "AU": "A_U", "KV/GV": "KV_GV", "K_V/G_V": "KV_GV", "KVGV": "KV_GV",
    "KV_GV": "KV_GV",
}
_POISSON = tuple(n for n in property_names() if n.startswith("nu"))
_ABSOLUTE = _POISSON + ("A_U",)  # constants matched by absolute, not relative, error
_ASINH_SCALE = 1e-4  # scale of the stiffness distance (as the dataset's TargetNormalizer)
_CURVE_POINTS = 13
_NUM_STIFFNESS = 9


def canonical_property(name: str) -> str:
    """Name of :func:`property_names` for ``name`` (case-insensitive; aliases of
    :data:`PROPERTY_ALIASES`, e.g. ``E22 -> E2``, ``K_V/G_V -> KV_GV``).

    Raises:
        ValueError: for an unknown name, listing the accepted ones.
    """
    names = {n.lower(): n for n in property_names()}
    names.update({k.lower(): v for k, v in PROPERTY_ALIASES.items()})
    key = str(name).strip().lower()
    if key not in names:
        raise ValueError(f"unknown property {name!r}; choose from {', '.join(property_names())} "
                         f"(aliases: {', '.join(sorted(PROPERTY_ALIASES))})")
    return names[key]


# --------------------------------------------------------------------------- properties

def _properties_unchecked(s9) -> dict:
    """All properties from stiffness 9-vectors ``[..., 9]`` without the singularity checks of
    :func:`~gnn_truss.properties.all_properties` (predicted stiffnesses may be indefinite during
    the optimisation; such iterates are masked by the caller). numpy or torch."""
    torch_in = isinstance(s9, torch.Tensor)
    s9 = s9 if torch_in else np.asarray(s9, dtype=np.float64)
    finite = (torch.isfinite(s9) if torch_in else np.isfinite(s9)).all(-1)
    if not bool(finite.all()):  # rows with NaN (failed FE) give NaN; a placeholder is inverted
        safe = torch.tensor([1.0, 0, 0, 1, 0, 1, 1, 1, 1], dtype=s9.dtype, device=s9.device) \
            if torch_in else np.array([1.0, 0, 0, 1, 0, 1, 1, 1, 1])
        where = torch.where if torch_in else np.where
        out = _properties_unchecked(where(finite[..., None], s9, safe))
        return {k: where(finite, v, float("nan")) for k, v in out.items()}
    C = stiffness_from_vector(s9)
    S = _compliance_unchecked(C)
    out = _engineering_from_compliance(S)
    out.update(_averages(C, S))
    return out


def property_table(stiffness: np.ndarray) -> dict:
    """Every property of :func:`property_names` for FE stiffness vectors.

    Args:
        stiffness: ``[N, 9]`` FE labels; rows with NaN give NaN.

    Returns:
        dict name -> ``[N]`` float64.
    """
    s = np.asarray(stiffness, dtype=np.float64).reshape(-1, _NUM_STIFFNESS)
    ok = np.all(np.isfinite(s), axis=1)
    out = {n: np.full(len(s), np.nan) for n in property_names()}
    if ok.any():
        props = all_properties(stiffness_from_vector(s[ok]))
        for n in out:
            out[n][ok] = props[n]
    return out


# --------------------------------------------------------------------------- objectives

@dataclass(frozen=True)
class Objective:
    """A design objective; :meth:`score` is minimised (lower is better).

    Attributes:
        spec: the objective as written (e.g. ``"max-E22"``).
        kind: ``"max"``, ``"min"``, ``"match-stiffness"``, ``"match-constants"`` or
            ``"match-curve"``.
        prop: property name (``max`` / ``min``), else ``None``.
        target: ``[9]`` stiffness or ``[13]`` curve target (``match-stiffness`` /
            ``match-curve``), else ``None``.
        constants: ``((name, value), ...)`` target constants (``match-constants``), else
            ``None``.
    """

    spec: str
    kind: str
    prop: str | None = None
    target: tuple | None = None
    constants: tuple | None = None  # ((name, value), ...), hashable

    @property
    def label(self) -> str:
        """``"curve"`` if the objective reads compression curves, else ``"stiffness"``."""
        return "curve" if self.kind == "match-curve" else "stiffness"

    @property
    def label_size(self) -> int:
        return _CURVE_POINTS if self.label == "curve" else _NUM_STIFFNESS

    @property
    def value_name(self) -> str:
        """What :meth:`value` reports."""
        return {"max": self.prop, "min": self.prop, "match-stiffness": "stiffness error",
                "match-constants": "constants error", "match-curve": "NRMSE"}[self.kind]

    def value(self, labels):
        """The reported quantity: the property (``max`` / ``min``) or the error (``match``).

        ``match-stiffness``: RMS over the 9 components of
        ``asinh(s / 1e-4) - asinh(t / 1e-4)`` (a log-ratio for components above 1e-4 E_s,
        linear below). ``match-constants``: RMS over the constants of ``(p - t) / |t|``
        (absolute error ``p - t`` for Poisson's ratios and ``A_U``). ``match-curve``: NRMSE
        ``RMSE / (max t - min t)``.

        Args:
            labels: ``[..., 9]`` stiffness or ``[..., 13]`` curves (numpy or torch).

        Returns:
            ``[...]``, same backend, differentiable for torch.
        """
        torch_in = isinstance(labels, torch.Tensor)
        if labels.shape[-1] != self.label_size:
            raise ValueError(f"objective {self.spec!r} needs labels [..., {self.label_size}], "
                             f"got {tuple(labels.shape)}")
        # sqrt(max(x, 1e-30)) in torch keeps the gradient finite at a perfect match
        sqrt = (lambda x: torch.sqrt(x.clamp_min(1e-30))) if torch_in else np.sqrt
        if self.kind in ("max", "min"):
            return _properties_unchecked(labels)[self.prop]
        target = self._target_like(labels)
        if self.kind == "match-stiffness":
            asinh = torch.asinh if torch_in else np.arcsinh
            d = asinh(labels / _ASINH_SCALE) - asinh(target / _ASINH_SCALE)
            return sqrt((d * d).mean(-1))
        if self.kind == "match-curve":
            d = labels - target
            span = float(np.ptp(np.asarray(self.target)))
            return sqrt((d * d).mean(-1)) / span
        props = _properties_unchecked(labels)
        terms = []
        for (name, t) in self.constants:
            scale = 1.0 if name in _ABSOLUTE else abs(t)
            terms.append(((props[name] - t) / scale) ** 2)
        stack = torch.stack(terms, -1) if torch_in else np.stack(terms, -1)
        return sqrt(stack.mean(-1))

    def score(self, labels):
        """The minimised quantity: ``-value`` for ``max``, ``value`` otherwise (``[...]``)."""
        v = self.value(labels)
        return -v if self.kind == "max" else v

    def _target_like(self, labels):
        if self.target is None:
            return None
        if isinstance(labels, torch.Tensor):
            return torch.as_tensor(self.target, dtype=labels.dtype, device=labels.device)
        return np.asarray(self.target, dtype=np.float64)


def _finite_numbers(values, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a list of numbers, got {values!r}") from None
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a flat list of numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or inf: {arr.tolist()}")
    return arr


def parse_objective(spec: str, target=None) -> Objective:
    """An :class:`Objective` from its name and (for ``match``) its target.

    Args:
        spec: ``max-<prop>`` / ``min-<prop>`` for any property of :func:`property_names` or an
            alias (``max-E22``, ``min-nu21``, ``max-KV_GV``, ``max-A_U``), ``match-stiffness``
            or ``match-curve``.
        target: for ``match-stiffness`` a 9-vector (C11, C12, C13, C22, C23, C33, C44, C55,
            C66; units E_s; positive definite) or a dict of engineering constants
            (``{"E1": 0.05, "nu21": -0.3}``); for ``match-curve`` 13 stresses (units E_s, not
            all equal). Ignored (must be ``None``) for ``max`` / ``min``.

    Raises:
        ValueError: for an unknown objective or property, a missing, superfluous or malformed
            target (wrong length, NaN/inf, indefinite stiffness, zero range, unknown constant).
    """
    if not isinstance(spec, str) or "-" not in spec:
        raise ValueError(f"objective must look like max-<property>, min-<property>, "
                         f"match-stiffness or match-curve; got {spec!r}")
    head, _, rest = spec.strip().partition("-")
    head = head.lower()
    if head in ("max", "min"):
        if target is not None:
            raise ValueError(f"objective {spec!r} takes no target")
        return Objective(spec, head, prop=canonical_property(rest))
    if head != "match" or rest.lower() not in ("stiffness", "curve"):
        raise ValueError(f"unknown objective {spec!r}; use max-<property>, min-<property>, "
                         f"match-stiffness or match-curve")
    if target is None:
        raise ValueError(f"objective {spec!r} needs a target (--target)")
    if rest.lower() == "curve":
        t = _finite_numbers(target, "curve target")
        if len(t) != _CURVE_POINTS:
            raise ValueError(f"curve target needs {_CURVE_POINTS} stresses (at 0.5 %, 2.5 %, "
                             f"..., 24.5 % strain), got {len(t)}")
        if np.ptp(t) <= 0:
            raise ValueError("curve target is constant (NRMSE needs max > min)")
        return Objective(spec, "match-curve", target=tuple(t.tolist()))
    if isinstance(target, dict):
        if not target:
            raise ValueError("constants target is empty")
        consts = []
        for k, v in target.items():
            name = canonical_property(k)
            val = _finite_numbers([v], f"target {k}")[0]
            if name not in _ABSOLUTE and not val > 0:
                raise ValueError(f"target {k} = {val:g} must be positive (matched by relative "
                                 f"error)")
            consts.append((name, float(val)))
        if len({n for n, _ in consts}) != len(consts):
            raise ValueError(f"target names a constant twice: {list(target)}")
        return Objective(spec, "match-constants", constants=tuple(consts))
    t = _finite_numbers(target, "stiffness target")
    if len(t) != _NUM_STIFFNESS:
        raise ValueError(f"stiffness target needs 9 components (C11, C12, C13, C22, C23, C33, "
                         f"C44, C55, C66) or a dict of constants, got {len(t)} numbers")
    if np.linalg.eigvalsh(stiffness_from_vector(t))[0] <= 0:
        raise ValueError(f"stiffness target {t.tolist()} is not positive definite")
    return Objective(spec, "match-stiffness", target=tuple(t.tolist()))


def load_target(text: str):
    """A target from the command line: JSON (a list or an object) or a file holding it
    (``.json``; ``.csv`` / ``.txt`` with numbers; ``.npy``).

    Raises:
        ValueError: if it is neither valid JSON nor a readable file.
    """
    path = Path(text)
    if path.suffix in (".json", ".csv", ".txt", ".npy") or path.is_file():
        if not path.is_file():
            raise ValueError(f"target file not found: {path}")
        if path.suffix == ".npy":
            try:
                return np.load(path, allow_pickle=False).reshape(-1).tolist()
            except (OSError, ValueError) as exc:
                raise ValueError(f"{path}: not a readable .npy file of numbers "
                                 f"({type(exc).__name__})") from None
        raw = path.read_text()
        if path.suffix in (".csv", ".txt"):
            try:
                return [float(v) for v in re.split(r"[,\s]+", raw.strip()) if v]
            except ValueError as exc:
                raise ValueError(f"{path}: not a list of numbers ({exc})") from None
        text = raw
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"target is neither JSON nor an existing file: {text!r} ({exc})") \
            from None


# --------------------------------------------------------------------------- named curve targets

#: Strains of the 13 curve points (0.5 %, 2.5 %, ..., 24.5 %).
CURVE_STRAINS = 0.005 + 0.02 * np.arange(_CURVE_POINTS)

#: Names accepted by :func:`curve_target` (``F`` a positive factor).
CURVE_TARGETS = ("stiffest", "stiffest*F", "softening")

SOFTENING_PEAK_STRAIN = 0.045
SOFTENING_END_RATIO = 0.5


def is_curve_target_name(text) -> bool:
    """Whether ``text`` names a :func:`curve_target` (rather than numbers or a file)."""
    return isinstance(text, str) and re.fullmatch(
        r"\s*(stiffest(\s*\*\s*[^\s]+)?|softening)\s*", text, flags=re.I) is not None


def curve_target(spec: str, curves) -> np.ndarray:
    """A named 13-point target curve built from a corpus' FE curves (the two benchmark targets
    of Zheng et al. 2023, Fig. 6b).

    * ``"stiffest*F"`` (``"stiffest"``: ``F = 1.3``): ``F`` times the corpus curve with the
      largest mean stress, i.e. a response ``(F - 1) * 100 %`` stiffer than any corpus curve.
    * ``"softening"``: a linear rise to a peak at 4.5 % strain, then a linear drop to half the
      peak at 24.5 %; the peak is the median of the corpus' peak stresses. Corpus curves mostly
      harden or plateau after buckling, so this target lies outside the corpus.

    Args:
        spec: one of :data:`CURVE_TARGETS`.
        curves: ``[N, 13]`` corpus curves (compressive nominal stress in E_s; rows with NaN,
            i.e. failed labels, are ignored).

    Returns:
        ``[13]`` float64 target stresses.

    Raises:
        ValueError: unknown name, bad factor, or no finite corpus curve.
    """
    c = np.asarray(curves, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != _CURVE_POINTS:
        raise ValueError(f"corpus curves must have shape [N, {_CURVE_POINTS}], got {c.shape}")
    c = c[np.all(np.isfinite(c), axis=1)]
    if len(c) == 0:
        raise ValueError("the corpus has no finite compression curve to build a target from")
    key = re.sub(r"\s+", "", str(spec)).lower()
    if key.startswith("stiffest"):
        factor = 1.3
        if key != "stiffest":
            try:
                factor = float(key.split("*", 1)[1])
            except (IndexError, ValueError):
                raise ValueError(f"curve target {spec!r}: write stiffest*F with a number F, "
                                 f"e.g. stiffest*1.3") from None
            if not (factor > 0 and np.isfinite(factor)):
                raise ValueError(f"curve target {spec!r}: the factor must be positive")
        return factor * c[np.argmax(c.mean(axis=1))]
    if key == "softening":
        peak = float(np.median(c.max(axis=1)))
        e, ep = CURVE_STRAINS, SOFTENING_PEAK_STRAIN
        drop = (e - ep) / (CURVE_STRAINS[-1] - ep)
        return np.where(e <= ep, peak * e / ep, peak * (1 - (1 - SOFTENING_END_RATIO) * drop))
    raise ValueError(f"unknown curve target {spec!r}; choose from {', '.join(CURVE_TARGETS)} "
                     f"or give 13 numbers / a file")
