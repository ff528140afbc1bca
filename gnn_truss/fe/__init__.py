"""Finite-element homogenization of beam trusses (linear: :mod:`.beam`, :mod:`.assembly`,
:mod:`.homogenization`; nonlinear compression: :mod:`.corotational`, :mod:`.nonlinear`;
linearised buckling of the cell: :mod:`.buckling`)."""
from .homogenization import (BatchHomogenization, Homogenization, Status, homogenize,
                             homogenize_batch, homogenize_periodic, stiffness_vector)

__all__ = ["BatchHomogenization", "Homogenization", "Status", "homogenize", "homogenize_batch",
           "homogenize_periodic", "stiffness_vector"]
