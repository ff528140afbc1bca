"""Finite-element homogenization of beam trusses (linear: :mod:`.beam`, :mod:`.assembly`,
:mod:`.homogenization`)."""
from .homogenization import (BatchHomogenization, Homogenization, Status, homogenize,
                             homogenize_batch, homogenize_periodic, stiffness_vector)

__all__ = ["BatchHomogenization", "Homogenization", "Status", "homogenize", "homogenize_batch",
           "homogenize_periodic", "stiffness_vector"]
