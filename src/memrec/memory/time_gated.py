"""Time-gated writes: idle decay towards a resting value, then a gated convex update (DEMN, L3).

One event x at elapsed time Δ since the row's previous event (spec ``demn.md`` B.3):

    w_s  = softmax_s(β · cos(k_s + m_s, x))                 address (key plus content, MIMN)
    γ_s  = exp(−Δ / τ_s)                                      idle decay, τ_s > 0 per slot
    m′_s = γ_s · m_s + (1 − γ_s) · r_s                        fade towards the resting value r_s
    c_s  = candidate(m′)_s                                    what the slot would become
    z_s  = w_s · gate(m′)_s,   gate ∈ [0, 1]                  attention-scaled update gate (AUGRU)
    m_s  ← (1 − z_s) · m′_s + z_s · c_s                       convex interpolation

Why a new write rather than erase-add: the slot fades by *elapsed time* (not by event count),
slots with a long τ_s keep long-term taste while short ones track drift (HPMN's multi-scale
memory without fixed periods), and every step is a convex combination of m, r and c, so the
memory stays inside their hull (bounded whenever r and c are — c is a tanh in DEMN).

The learned parts (the candidate and gate networks) are passed in as callables of the decayed
memory, so the primitive stays a pure function that hand-computed tests can check; the keys k_s
live in ``state.keys``. :func:`time_gated_unroll` applies the write over a padded [B, T]
sequence with :func:`~memrec.memory.unroll.unroll` (a batched loop over time steps: the gate
depends on the memory, so there is no closed-form scan). ``mask`` is never changed.
:func:`time_gated_scan` is the same write for networks linear in the decayed memory (DEMN's),
with one fused step each way and a hand-written backward: the training path (tested against
:func:`time_gated_unroll`, gradients included).
"""

from __future__ import annotations

from typing import Callable

import torch

from .state import MemoryState
from .unroll import UnrolledStates, check_shape, unroll

__all__ = ["idle_decay", "time_gated_address", "time_gated_write", "time_gated_unroll", "time_gated_scan"]

#: candidate(decayed [B, S, D]) → [B, S, D]; gate(decayed [B, S, D]) → [B, S] in [0, 1]
SlotFn = Callable[[torch.Tensor], torch.Tensor]


def idle_decay(values: torch.Tensor, rest: torch.Tensor, timescale: torch.Tensor,
               elapsed: torch.Tensor) -> torch.Tensor:
    """m′ = γ m + (1 − γ) r with γ_s = exp(−Δ/τ_s).

    values, rest [B, S, D]; timescale [S] or [B, S] (positive); elapsed [B] (≥ 0) → [B, S, D].
    Δ = 0 gives γ = 1, the identity; Δ → ∞ gives the resting value.
    """
    gamma = torch.exp(-elapsed[:, None] / timescale).unsqueeze(-1)             # [B, S, 1]
    return gamma * values + (1 - gamma) * rest


def time_gated_address(state: MemoryState, x: torch.Tensor, beta: float | torch.Tensor = 1.0
                       ) -> torch.Tensor:
    """w_s = softmax_s(β · cos(k_s + m_s, x)): state [B, S, D] (keys [B, S, D] or None: the
    content alone), x [B, D] → [B, S]."""
    address = state.values if state.keys is None else state.keys + state.values
    cosine = torch.nn.functional.cosine_similarity(address, x[:, None, :], dim=-1, eps=1e-8)
    return torch.softmax(beta * cosine, dim=-1)


def time_gated_write(state: MemoryState, x: torch.Tensor, rest: torch.Tensor,
                     timescale: torch.Tensor, elapsed: torch.Tensor, candidate: SlotFn,
                     gate: SlotFn, beta: float | torch.Tensor = 1.0) -> MemoryState:
    """One time-gated write per row (the B.3 table; the serving path).

    Parameters
    ----------
    state : MemoryState
        values [B, S, D]; keys [B, S, D] (the slots' learned keys k_s) or None.
    x : [B, D]
        The event's input (DEMN: the consumed item's memory-enriched embedding).
    rest : [B, S, D]
        The resting value r_s a slot fades to when idle (DEMN: k_s + p_u).
    timescale : [S] or [B, S]
        τ_s > 0 (DEMN: softplus of a learned θ_s).
    elapsed : [B]
        Δ ≥ 0 since the row's previous event (seconds, or 1 step where there is no clock).
    candidate, gate : callables of the decayed memory m′ [B, S, D]
        → candidate values c [B, S, D] and the gate σ(·) [B, S] in [0, 1].
    beta : address sharpness β.

    Returns
    -------
    MemoryState with new values [B, S, D]; mask and keys unchanged.
    """
    B, S, D = state.values.shape
    check_shape("x", x, (B, D))
    check_shape("rest", rest, (B, S, D))
    check_shape("elapsed", elapsed, (B,))
    w = time_gated_address(state, x, beta)                                     # address, [B, S]
    decayed = idle_decay(state.values, rest, timescale, elapsed)              # m′
    c = candidate(decayed)                                                     # c_s
    z = (w * gate(decayed)).unsqueeze(-1)                                      # z_s = w_s σ(·)
    return state.with_values((1 - z) * decayed + z * c)                        # convex interpolation


def time_gated_unroll(state: MemoryState, x: torch.Tensor, rest: torch.Tensor,
                      timescale: torch.Tensor, elapsed: torch.Tensor, mask: torch.Tensor,
                      candidate: Callable[[torch.Tensor, int], torch.Tensor],
                      gate: Callable[[torch.Tensor, int], torch.Tensor],
                      beta: float | torch.Tensor = 1.0, *, return_all: bool = True
                      ) -> MemoryState | UnrolledStates:
    """:func:`time_gated_write` over a padded sequence: x [B, T, D], elapsed [B, T], mask bool
    [B, T]; ``candidate(decayed, t)`` / ``gate(decayed, t)`` see the step index, so per-step
    context (neighbours, Δ's embedding) can enter them. Padded steps leave a row unchanged.
    Returns every state (index t: after event t) or, with ``return_all=False``, the last."""
    steps = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)

    def step(s: MemoryState, x_t, elapsed_t, t):
        t = int(t[0])                                                          # same t in every row
        return time_gated_write(s, x_t, rest, timescale, elapsed_t, lambda m: candidate(m, t),
                                lambda m: gate(m, t), beta)
    return unroll(step, state, (x, elapsed, steps), mask, return_all=return_all)


# -- the fused scan (training and encoding speed) -------------------------------------------------
def time_gated_scan(values: torch.Tensor, keys: torch.Tensor, x: torch.Tensor, rest: torch.Tensor,
                    gamma: torch.Tensor, cand_in: torch.Tensor, gate_in: torch.Tensor,
                    weight: torch.Tensor, mask: torch.Tensor, beta: float = 1.0, *,
                    return_all: bool = True) -> torch.Tensor:
    """Every state of a sequence of :func:`time_gated_write` s whose networks are linear in the
    decayed memory (DEMN's): equals :func:`time_gated_unroll` with

        candidate(m′, t) = tanh(cand_in[:, t] + m′ W_cᵀ),   gate(m′, t) = σ(gate_in[:, t] + m′ w_zᵀ)

    and ``weight`` = [W_c; w_z] ([D + 1, D]), but one step is a handful of fused ops each way
    with a hand-written backward (:class:`_TimeGatedScan`) instead of an autograd graph of ~30
    nodes per step: the loop over time is the whole training cost when a batch holds one long
    sequence (B = 1, T in the hundreds), where every op's fixed overhead counts.

    Parameters
    ----------
    values : [B, S, D], the initial memory.
    keys : [S, D] or [B, S, D], the slots' address keys k_s.
    x : [B, T, D], each event's input; only its direction enters (the cosine address).
    rest : [B, S, D], the resting value r_s.
    gamma : [B, T, S], the idle decay γ = exp(−Δ/τ_s) of each step (computed by the caller, so
        autograd carries τ and Δ).
    cand_in : [B, T, D]; gate_in : [B, T]; weight : [D + 1, D]; mask : bool [B, T] (a step
        with mask False leaves the row unchanged); beta : address sharpness β.

    return_all : False: only the last state [B, S, D]; outside autograd this keeps one step's
        memory instead of T (encoding for evaluation and serving).

    Returns
    -------
    [B, T, S, D]: index t is the memory after event t (or [B, S, D], the last).
    """
    B, S, D = values.shape
    T = x.shape[1]
    check_shape("x", x, (B, T, D))
    check_shape("gamma", gamma, (B, T, S))
    check_shape("weight", weight, (D + 1, D))
    if T == 0:
        return values.unsqueeze(1)[:, :0] if return_all else values
    # β times the event's direction, as ``cosine_similarity`` normalises it (norm clamped at
    # 1e-8), and the memory-free parts of every step: autograd carries them outside the loop
    direction = beta * x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    time_major = lambda t: t.transpose(0, 1).contiguous()                      # noqa: E731
    bias = torch.cat([cand_in, gate_in[..., None]], -1)                         # [ci | gi], [B, T, D + 1]
    inputs = (values, keys, direction, gamma, rest, bias, weight)
    if not return_all and not (torch.is_grad_enabled() and any(t.requires_grad for t in inputs)):
        return _final_state(values, keys, time_major(direction), time_major(gamma), rest, time_major(bias),
                            weight, time_major(mask.to(values.dtype)))
    faded = (1 - gamma)[..., None] * rest[:, None]                             # (1 − γ) r, [B, T, S, D]
    out = _TimeGatedScan.apply(values, keys, time_major(direction), time_major(gamma), time_major(faded),
                               time_major(bias), weight, time_major(mask.to(values.dtype)))
    return out.transpose(0, 1) if return_all else out[-1]


def _scan_step(previous, keys, transposed, d_t, gamma_t, f_t, b_t, on_t, partial: bool, buffers) -> None:
    """One forward step of :class:`_TimeGatedScan` (its docstring has the equations), written
    into ``buffers`` = (out, m′, c, [p_c | p_g], w, g, l, |a|, z) of this step; ``previous`` must
    not be ``out``. ``partial``: some row is padding here (only then is ``on_t`` read)."""
    out_t, m_t, c_t, p_t, w_t, g_t, l_t, n_t, z_t = buffers
    D = out_t.shape[-1]
    a = keys + previous
    torch.linalg.vector_norm(a, dim=-1, out=n_t).clamp_min_(1e-8)
    torch.div((a @ d_t[:, :, None])[..., 0], n_t, out=l_t)                       # β cos
    torch.softmax(l_t, -1, out=w_t)                                               # w
    torch.addcmul(f_t, gamma_t[:, :, None], previous, out=m_t)                    # m′
    torch.baddbmm(b_t[:, None, :], m_t, transposed, out=p_t)
    torch.tanh(p_t[..., :D], out=c_t)                                             # c
    torch.sigmoid(p_t[..., D], out=g_t)                                           # g
    torch.mul(w_t, g_t, out=z_t)                                                  # z
    if partial:
        z_t.mul_(on_t[:, None])
    torch.addcmul(m_t, z_t[..., None], c_t - m_t, out=out_t)
    if partial:
        out_t.copy_(torch.where(on_t[:, None, None] > 0, out_t, previous))


@torch.no_grad()
def _final_state(initial, keys, direction, gamma, rest, bias, weight, active) -> torch.Tensor:
    """The last state of :class:`_TimeGatedScan` with memory for one step, not T: encoding a
    batch of long histories for ranking keeps no per-step tensors (a full-ranking batch of
    ml-100k holds 943 users × 737 steps: every state would be 0.7 GB per tensor). The same
    step, so the same arithmetic as the training scan's last state."""
    T, B = direction.shape[:2]
    D = initial.shape[-1]
    transposed = weight.t().expand(B, D, D + 1)
    partial = (active < 1).any(1).tolist()
    ping, pong = torch.empty_like(initial), torch.empty_like(initial)
    m_t, c_t, f_t = torch.empty_like(initial), torch.empty_like(initial), torch.empty_like(initial)
    p_t = initial.new_empty(*initial.shape[:-1], D + 1)
    w_t, g_t, l_t, n_t, z_t = (initial.new_empty(initial.shape[:2]) for _ in range(5))
    previous = initial
    for t in range(T):
        torch.mul(1 - gamma[t, :, :, None], rest, out=f_t)                        # (1 − γ) r
        out_t = ping if previous is not ping else pong
        _scan_step(previous, keys, transposed, direction[t], gamma[t], f_t, bias[t], active[t], partial[t],
                   (out_t, m_t, c_t, p_t, w_t, g_t, l_t, n_t, z_t))
        previous = out_t
    return previous


class _TimeGatedScan(torch.autograd.Function):
    """The time-gated write over time-major inputs, forward and backward about a dozen fused ops
    a step each, no autograd graph inside.

    Forward, per step (m: the memory before the event; d = β x/|x|; f = (1 − γ) r; [ci | gi]
    the step's bias):

        a = k + m;  l_s = a_s·d / |a_s| (= β cos);  w = softmax(l)
        m′ = γ m + f;  [p_c | p_g] = m′ [W_c; w_z]ᵀ + [ci | gi];  c = tanh(p_c);  g = σ(p_g)
        z = w g;  new = m′ + z (c − m′);  out = active ? new : m

    Backward (G = ∂L/∂new, zero where inactive; the chain rule of the lines above):

        ∂p_c = G z (1 − c²);  ∂z = Σ_d G (c − m′);  ∂p_g = ∂z w g (1 − g)
        ∂m′ = G (1 − z) + [∂p_c | ∂p_g] [W_c; w_z]
        ∂l = u − w Σ_s u with u = ∂z z (the softmax through w = z/g)
        ∂a = ∂l (d − l â) / |a| (â = a/|a|);  ∂d = Σ_s ∂l_s â_s
        ∂m = γ ∂m′ + ∂a (+ ∂L/∂out where inactive)

    Everything that does not feed the recurrence (c − m′, z (1 − c²), d − l â, ...) is formed
    for all steps at once before the loop, and the parameter terms (∂W, ∂bias, ∂γ, ∂f, ∂k, ∂d)
    are stored per step and reduced once after it.
    """

    @staticmethod
    def forward(ctx, initial, keys, direction, gamma, faded, bias, weight, active):
        T, B = direction.shape[:2]
        D = initial.shape[-1]
        out = initial.new_empty(T, *initial.shape)
        decayed, candidate = torch.empty_like(out), torch.empty_like(out)
        projected = out.new_empty(*out.shape[:-1], D + 1)
        address, gate, logit, norm, z = (initial.new_empty(T, *initial.shape[:2]) for _ in range(5))
        transposed = weight.t().expand(B, D, D + 1)
        partial = (active < 1).any(1).tolist()                   # steps where some row is padding (one sync)
        steps = zip(out.unbind(0), decayed.unbind(0), candidate.unbind(0), projected.unbind(0),
                    address.unbind(0), gate.unbind(0), logit.unbind(0), norm.unbind(0), z.unbind(0),
                    direction.unbind(0), gamma.unbind(0), faded.unbind(0), bias.unbind(0), active.unbind(0))
        previous = initial
        for t, (out_t, m_t, c_t, p_t, w_t, g_t, l_t, n_t, z_t, d_t, gamma_t, f_t, b_t, on_t) in enumerate(steps):
            _scan_step(previous, keys, transposed, d_t, gamma_t, f_t, b_t, on_t, partial[t],
                       (out_t, m_t, c_t, p_t, w_t, g_t, l_t, n_t, z_t))
            previous = out_t
        ctx.partial = partial
        ctx.save_for_backward(initial, keys, direction, gamma, weight, active, out, decayed,
                              candidate, address, gate, logit, norm, z)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        (initial, keys, direction, gamma, weight, active, out, decayed, candidate, address, gate,
         logit, norm, z) = ctx.saved_tensors
        D = initial.shape[-1]
        previous = torch.cat([initial[None], out[:-1]])                            # m before each step
        unit = (keys + previous) / norm[..., None]                                  # â
        inner = direction[:, :, None, :] - logit[..., None] * unit                  # d − l â
        diff = candidate - decayed                                                  # c − m′
        tanh_term = z[..., None] * (1 - candidate * candidate)                      # z (1 − c²)
        keep = (1 - z)[..., None]                                                   # 1 − z
        sigmoid_term = address * gate * (1 - gate)                                  # w g (1 − g)
        grad_proj = out.new_empty(*out.shape[:-1], D + 1)                           # [∂p_c | ∂p_g]
        grad_decayed, grad_address_in = torch.empty_like(out), torch.empty_like(out)
        grad_logit = torch.empty_like(z)
        steps = zip(grad_out.unbind(0), grad_proj.unbind(0), grad_decayed.unbind(0),
                    grad_address_in.unbind(0), grad_logit.unbind(0), tanh_term.unbind(0),
                    diff.unbind(0), sigmoid_term.unbind(0), keep.unbind(0), z.unbind(0),
                    address.unbind(0), norm.unbind(0), inner.unbind(0), gamma.unbind(0), active.unbind(0))
        grad = torch.zeros_like(initial)                                            # ∂L/∂m_t from later steps
        for t, (go_t, gp_t, gd_t, ga_t, gl_t, tt_t, diff_t, st_t, keep_t, z_t, w_t, n_t, in_t, gamma_t,
                on_t) in reversed(list(enumerate(steps))):
            total = grad + go_t
            G = total * on_t[:, None, None] if ctx.partial[t] else total          # inactive: no write
            torch.mul(G, tt_t, out=gp_t[..., :D])
            dz = torch.linalg.vecdot(G, diff_t)                                     # ∂z, [B, S]
            torch.mul(dz, st_t, out=gp_t[..., D])
            torch.addcmul(gp_t @ weight, G, keep_t, out=gd_t)                       # ∂m′
            u = dz * z_t
            torch.addcmul(u, w_t, u.sum(-1, keepdim=True), value=-1, out=gl_t)      # ∂l
            torch.mul((gl_t / n_t)[..., None], in_t, out=ga_t)                      # ∂a
            grad = torch.addcmul(ga_t, gamma_t[:, :, None], gd_t)                   # ∂m
            if ctx.partial[t]:
                grad += total * (1 - on_t)[:, None, None]
        grad_keys = grad_address_in.sum(0)
        if keys.dim() == 2:
            grad_keys = grad_keys.sum(0)
        return (grad, grad_keys, (grad_logit[..., None, :] @ unit)[..., 0, :],
                torch.linalg.vecdot(grad_decayed, previous), grad_decayed, grad_proj.sum(-2),
                grad_proj.reshape(-1, D + 1).t() @ decayed.reshape(-1, D), None)
