"""Memory writes: pure functions ``MemoryState -> MemoryState``, batched and autograd-friendly.

The public façade of the write vocabulary: import writes from here (``from ..memory.write
import ...``); the code lives in one module per write, beside that write's fast unrolls.

Every write returns a new state and never mutates its inputs, so the same function serves two
paths that must agree (DESIGN.md, "streaming == batch"):

* training unrolls a write over a padded ``[B, T]`` sequence with :func:`unroll`;
* serving calls the write once per arriving event on a stored state.

The primitives and the models built from them (spec ``rum-ksr-stamp-nmrn.md``):

==========================  =====================================================  ============
write                       update                                                 used by
==========================  =====================================================  ============
:func:`fifo_append`         queue of the last M items, oldest evicted              RUM-I, STAMP
:func:`erase_add_write`     v_m ← v_m ⊙ (1 − w_m·e) + w_m·a   (NTM / DKVMN)        RUM-F, NMRN
:func:`gated_write`         v_m ← (1 − z_m)·v_m + z_m·u_m,  z_m = σ(⟨v_m, u_m⟩)    KSR
:func:`time_gated_write`    m′ = γ m + (1 − γ) r, γ = e^(−Δ/τ); m ← (1 − z) m′ + z c DEMN
==========================  =====================================================  ============

Where each lives:

==================================  =============================================================
module                              contents
==================================  =============================================================
:mod:`memrec.memory.fifo`           :func:`fifo_append`; the final state :func:`fifo_window`;
                                    every state :func:`fifo_positions` / :func:`fifo_states`
                                    (gathers, no loop), and the FIFO slot layout
:mod:`memrec.memory.erase_add`      :func:`erase_add_write`; the final state
                                    :func:`erase_add_final`; every state :func:`erase_add_unroll`
                                    via :func:`affine_scan` (the write is affine in the
                                    memory: a log-depth scan)
:mod:`memrec.memory.gated`          :func:`gated_write`; the final state :func:`gated_final`;
                                    every state :func:`gated_unroll` (one fused step per
                                    event, hand-written backward)
:mod:`memrec.memory.time_gated`     :func:`time_gated_write` (idle decay, then a gated convex
                                    update); every state :func:`time_gated_unroll` (via unroll)
                                    or :func:`time_gated_scan` (fused, hand-written backward)
:mod:`memrec.memory.unroll`         :func:`unroll` (any write, any padding),
                                    :class:`UnrolledStates`, :func:`select_rows`, the final-state
                                    loop :func:`final_values`, and the shape helpers the writes
                                    share
==================================  =============================================================

The parameters that produce the write's inputs (RUM-F's ``E, A``, KSR's relation embeddings, the
addressing softmax) belong to the models; these functions only apply the update equations.

Masks of fixed-slot memories (RUM-F, KSR, NMRN): :func:`erase_add_write` and :func:`gated_write`
never change ``mask``. Those memories have every slot real from the start, so build their initial
state with the mask all True (``MemoryState.empty`` gives mask all False, which suits the FIFO).
"""

from __future__ import annotations

from .erase_add import affine_scan, erase_add_final, erase_add_unroll, erase_add_write
from .fifo import fifo_append, fifo_positions, fifo_states, fifo_window
from .gated import gated_final, gated_unroll, gated_write
from .time_gated import time_gated_unroll, time_gated_write
from .unroll import UnrolledStates, select_rows, unroll

__all__ = [
    "fifo_append", "fifo_window", "fifo_positions", "fifo_states", "erase_add_write", "gated_write",
    "gated_unroll", "gated_final", "time_gated_write", "time_gated_unroll",
    "affine_scan", "erase_add_unroll", "erase_add_final",
    "select_rows", "unroll", "UnrolledStates",
]
