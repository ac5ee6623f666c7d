"""DEMN's fast training path computes what the slow one did (issue 19, speed).

Two guards. (1) The fused scan (``time_gated_scan``, a hand-written backward) equals the
reference unroll of ``time_gated_write`` (``time_gated_unroll``, autograd through every step),
values and every input's gradient, and passes ``gradcheck`` in double precision. (2) A fixed-seed
forward + backward of the whole model (loss, scores, the bank, every parameter's gradient, an
encoded state and its scores) matches, to 1e-5, the outputs the model gave *before* the speed
work (commit 923953d: the per-step autograd unroll and a history read over the whole sequence),
pinned below as float32 bytes. Regenerate REFERENCE only for an intended change of the math.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from memrec.data.synthetic import SynthConfig, generate
from memrec.memory.state import MemoryState
from memrec.memory.time_gated import time_gated_scan, time_gated_unroll
from memrec.models import build

PINNED_PARAMS = {"dim": 8, "slots": 3, "visitors": 4, "history": 5, "top_r": 3}


def scan_inputs(seed: int, B=3, T=6, S=4, D=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype).requires_grad_()  # noqa: E731
    values, keys, x, rest = rand(B, S, D), rand(S, D), rand(B, T, D), rand(B, S, D)
    tau = (torch.rand(S, generator=g, dtype=dtype) * 5 + 0.5).requires_grad_()
    cand_in, gate_in, weight = rand(B, T, D), rand(B, T), rand(D + 1, D)
    elapsed = torch.rand(B, T, generator=g, dtype=dtype) * 3
    mask = torch.rand(B, T, generator=g) > 0.3                     # holes anywhere
    mask[0] = True
    return (values, keys, x, rest, tau, cand_in, gate_in, weight), elapsed, mask


def reference_unroll(elapsed, mask, beta, values, keys, x, rest, tau, cand_in, gate_in, weight):
    B, S, D = values.shape
    state = MemoryState(values, torch.ones(B, S, dtype=torch.bool), keys.expand(B, S, D))
    return time_gated_unroll(state, x, rest, tau, elapsed, mask,
                             lambda m, t: torch.tanh(cand_in[:, t, None, :] + m @ weight[:D].T),
                             lambda m, t: torch.sigmoid(gate_in[:, t, None] + (m @ weight[D:].T)[..., 0]),
                             beta).values


def fused_scan(elapsed, mask, beta, values, keys, x, rest, tau, cand_in, gate_in, weight):
    gamma = torch.exp(-elapsed[..., None] / tau)
    return time_gated_scan(values, keys, x, rest, gamma, cand_in, gate_in, weight, mask, beta)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fused_scan_equals_the_reference_unroll_with_gradients(seed):
    inputs, elapsed, mask = scan_inputs(seed)
    slow = reference_unroll(elapsed, mask, 2.5, *inputs)
    fast = fused_scan(elapsed, mask, 2.5, *inputs)
    assert torch.allclose(fast, slow, atol=1e-12)
    upstream = torch.randn(slow.shape, generator=torch.Generator().manual_seed(seed), dtype=slow.dtype)
    expected = torch.autograd.grad((slow * upstream).sum(), inputs)
    got = torch.autograd.grad((fast * upstream).sum(), inputs)
    names = ("values", "keys", "x", "rest", "tau", "cand_in", "gate_in", "weight")
    for name, a, b in zip(names, got, expected):
        assert torch.allclose(a, b, atol=1e-12), name


@torch.no_grad()
def test_the_last_state_alone_equals_the_last_of_every_state():
    # return_all=False outside autograd runs a loop that keeps one step (encoding for ranking)
    (values, keys, x, rest, tau, cand_in, gate_in, weight), elapsed, mask = scan_inputs(4)
    mask[1, -2:] = False                                            # a right-padded row
    gamma = torch.exp(-elapsed[..., None] / tau)
    every = time_gated_scan(values, keys, x, rest, gamma, cand_in, gate_in, weight, mask, 2.0)
    last = time_gated_scan(values, keys, x, rest, gamma, cand_in, gate_in, weight, mask, 2.0, return_all=False)
    assert torch.equal(last, every[:, -1])


def test_fused_scan_passes_gradcheck():
    inputs, elapsed, mask = scan_inputs(3, B=2, T=4, S=3, D=3)
    assert torch.autograd.gradcheck(lambda *a: fused_scan(elapsed, mask, 1.5, *a), inputs)


def test_fused_scan_of_an_empty_sequence_is_empty():
    (values, keys, _, rest, _, _, _, weight), _, _ = scan_inputs(0)
    out = time_gated_scan(values, keys, values.new_zeros(3, 0, 5), rest, values.new_zeros(3, 0, 4),
                          values.new_zeros(3, 0, 5), values.new_zeros(3, 0), weight,
                          torch.zeros(3, 0, dtype=torch.bool))
    assert out.shape == (3, 0, 4, 5)


def pinned_outputs(params: dict | None = None) -> dict[str, torch.Tensor]:
    """The fixed-seed run REFERENCE was recorded from: a training forward + backward on a padded
    batch (with a history window shorter than the sequences), then encode and score in eval."""
    torch.manual_seed(0)
    data = generate(SynthConfig(n_users=12, n_items=15, mean_length=6, seed=1))
    model = build("demn", data.n_users, data.n_items, {**PINNED_PARAMS, **(params or {})})
    model.prepare(data)
    g = torch.Generator().manual_seed(5)
    B, T = 5, 9
    mask = torch.arange(T)[None] < torch.tensor([9, 1, 4, 7, 3])[:, None]
    history = torch.randint(0, data.n_items, (B, T), generator=g) * mask
    users = torch.tensor([0, 3, 5, 7, 11])
    candidates = torch.randint(0, data.n_items, (B, T, 4), generator=g)
    weights = torch.randn(B, T, 4, generator=g)
    model.train()
    scores = model.prefix_scores(users, history, mask, candidates)
    loss = (scores * weights * mask[..., None]).sum()
    loss.backward()
    out = {"loss": loss.detach(), "scores": scores.detach() * mask[..., None], "bank": model.bank.clone()}
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.clone() if p.grad is not None else torch.zeros_like(p)
    # p's last row is the anonymous user (added after 923953d): known users never read it
    grad = out.pop("grad.user_embedding.weight")
    out["grad.user_embedding.weight"], out["grad.anonymous_user"] = grad[:data.n_users], grad[data.n_users:]
    model.eval()
    with torch.no_grad():
        state = model.encode(users, history, mask)
        out["state"] = state.values.clone()
        out["score_state"] = model.score_state(state, users)
        out["eval_prefix"] = model.prefix_scores(users, history, mask, candidates) * mask[..., None]
    return out


def reference() -> dict[str, torch.Tensor]:
    flat = np.frombuffer(base64.b64decode("".join(REFERENCE)), dtype=np.float32)
    out, start = {}, 0
    for name, shape in PINNED:
        n = int(np.prod(shape, dtype=np.int64))
        out[name] = torch.from_numpy(flat[start:start + n].copy()).reshape(shape)
        start += n
    assert start == len(flat)
    return out


def test_model_outputs_and_gradients_match_the_pre_speed_code():
    got, expected = pinned_outputs(), reference()
    assert torch.equal(got.pop("grad.anonymous_user"), torch.zeros(1, PINNED_PARAMS["dim"]))
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert torch.allclose(got[name], value, atol=1e-5, rtol=0), (name, (got[name] - value).abs().max())


#: (name, shape) of each pinned output, in the order of REFERENCE's float32 values
PINNED = [
    ('loss', ()),
    ('scores', (5, 9, 4)),
    ('bank', (12, 8)),
    ('grad.slot_keys', (3, 8)),
    ('grad.timescale_logit', (3,)),
    ('grad.visitor_recency', ()),
    ('grad.history_recency', ()),
    ('grad.user_embedding.weight', (12, 8)),
    ('grad.visitor_embedding.weight', (12, 8)),
    ('grad.item_embedding.weight', (15, 8)),
    ('grad.item_bias.weight', (15, 1)),
    ('grad.candidate_in.weight', (8, 16)),
    ('grad.candidate_in.bias', (8,)),
    ('grad.candidate_slot.weight', (8, 8)),
    ('grad.gate_in.weight', (1, 24)),
    ('grad.gate_in.bias', (1,)),
    ('grad.gate_slot.weight', (1, 8)),
    ('grad.delta_embedding.weight', (16, 8)),
    ('grad.hop.weight', (8, 8)),
    ('grad.hop.bias', (8,)),
    ('grad.read_gates.weight', (2, 32)),
    ('grad.read_gates.bias', (2,)),
    ('state', (5, 3, 8)),
    ('score_state', (5, 15)),
    ('eval_prefix', (5, 9, 4)),
]
REFERENCE = (
    "hAGLPkiutL3hKMG9FVQJvSDpNTytC5Q9WvilvYQl6LyhB4Y9YmacvWJmnL2UnHk9woybvUIC8zulAow9rLr7PSEnuz0i14+9"
    "90PZPefttz3n7bc9b/YUPQDNBD4RHRI9iR5xPeaxGr0hzKQ8WNm6PSHMpDwtv+E93PEAvV5tDj1+7QI9wG7mvLGEtTwUs9A8"
    "sYS1PKqKoD3QLxG+7kBoPQnqAD4AAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACAAAAAAAAAAAAAAAAAAAAAgAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAAAAAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAAAAAAAAA"
    "AAAAAALC9bzC3yC9pjcmveSZBD5Hkdq8zn73PItTbb1Hkdq8/IVLPY2c0byxMHq8jZzRvP17ZT1ilQM9a1uovH0oZr0AAACA"
    "AAAAgAAAAIAAAACAAAAAAAAAAAAAAAAAAAAAAAAAAIAAAACAAAAAgAAAAIAAAAAAAAAAgAAAAIAAAACAAAAAgAAAAIAAAACA"
    "AAAAgMr4yLylGsE9yvjIvComOD3Row49MktuPYz6GL1IxFY8V0ZLvOnW97wAq4A9o4apPYL9wD0fbYg9FgEIPa02l70qWjU8"
    "PJutPYw747uMO+O7bph7PG6YezwybZs9BYxMOilT0T0D3Fs9lLoPvcmx1zwAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAN58Fz03AU29MOybvE+Lej0PTX27D019u+lsFb7pbBW+XlKMPaknw70tVw++mf+AvQAAAIAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAgAAAAIAAAACAAAAAAAAAAIAAAACAAAAAAAAAAAAAAAAAAAAAgAAAAAAAAAAAAAAAgAAAAIAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAgM+lBj3gPTy9cEyyPI1yLL0Ngk0+o8eYPe0QWT7vq5A9LxiwPacpVz1nJRm9LNUcvlhgJT5MFB8+qNLmPaF1Bz6CjJq9"
    "kzOIPmEHiL2risk9FKWIvUMM6r2SXHO9xMycvZGZFb6oyOQ8GPdcvkj8M74LWnw+9brwvafnnjyTH30+ktuGPfLysLwamai9"
    "goVRPiA0VbwkpfG8CtAhPtrYgD6c+AG9Cy86vX6/Ez1dN8S9FUl/veg1nT17Zpk952QcvaK9r7wqX8W9shUUvsm4+j3/ATq+"
    "9feDvbiYDD0rr8A9tleaPW9uiTyF1j+8L9YCvuMdcT1Asgc+K+CfPSmUAbx5Izw+izaSPOo72ryQJvm6APKsvOBCLTtS47Y9"
    "FaB7Pv1KI72JKic9uGQ1PJZDiz0I7By8oBK4u/jeCj1ywBI+pkSHPHD5gD3gbA48rJIyPZu1hj3MFNa9+7IFPrVxZj51liU9"
    "jb2svAmOqr2tLG++vc9KPTM1/L3A5xg+PWwWPYBsGD8qLU2+NccDPVReKL62pQM+4hMYPj2zqr5Qdz88ynsdP05cSr0sSwo9"
    "UoOEvi+Xoz2Azny8liHMvoqvvLw5H9A+TJs7vmjq0j1PHi2+h7NlvfZLnb1Fepi+OUNTvfg2bjxjpt078yydOrKZj7xHXSu9"
    "BYEEQCOUhb8yzlG/Do3lvTUHzz+vmrQ/Nq2Jvw+pJT/KjRW8nWZdO17eMDxxNZO6pjKeO4N3qbyizv47dIgEu9Tppbu0x425"
    "Co3gOSxZ5zuFWgq8HoExvEGtKbzNV7S7uDuYu68qIT5iyeI+VENPvhfHej4pSfW9A//EPcE5qr1pkp07b1tbu4gb8rsDquG7"
    "dy6WO6B/xzi2B6s6/+6ZOxUo6r6v1vu+E+c/vle5t70V5R2/4Zmqv+r5ab8NVk2/b8yUu5rtvLsZoLg7oC7Nuon1OjvLgou6"
    "uAExPP68Nzs7L2E/jMRnvkqn1T+RekM+cU/IPiodWj034gi+3aeuPl4My7lO0p+6ibF0ux1xcLuNCPc6tH7VOlgOjrr8rk47"
    "aDJBPG17JTsE7+C75f77O0i2BDvdb4A8Cw/ou/baFTpfUp87wQ+fuyB377vn8oc7e570uqYKMTwWb2G7/xqGuKDxmD/L10A/"
    "j4tXvwAyb7/h1KO/wEdnPVcKAb9qKZK+TO1Avt/GQ76UORw+1sVIPkHeD73gdwG9dFIovhX+Fj2//hM+9fmGvkl8xz4x7MY/"
    "xENSP1Geoj/vjt4+8pbRPvzv2b1sZCi+wtcLPQwZKj5+FGo+dPrIO2gW/D1wJVo+CPC1PmU1tT2/nBC+C40RPU5zyT6S2zI+"
    "16gIPyW2Bz4s47w+NuBxva4GQb0RzTQ/SvUaPyaFvD7lJUU/QOOUPqdCk75F4zG+5otRvdSI3b7HLHy+qTy1vrt1sb7Tf7Y8"
    "H7u9vhrHFr904FA+qTOcPmhzXT3uzca+rVyivZY2Cj5vF/E9cbXzvCYKr70AlDk91NWIPhxR+TyyxJ8+hTrVPVs5/T2jLV88"
    "nHEKvoQApj3UQg8/jJvOvaVJHj+764k+ah9CPriK+Dwe3le+v6rOPcVjKz+UGKe9N1obP1+esD6Anaq9YKcHvnstKL7ssbo+"
    "Iw73PsEPG772a16/68NgPtaVBj+LP0k+h5VdvkZ7Mj5op0M/TqJ8PWIGmD//Bao+voDAPkkW5j4yUTy/4Gv1viPKZT+NGNm+"
    "aCd0PnnKlj5tmUo/0WplPYUYnz3C2lg/nWh/P004mD8ypbg/gH3PPjerE72AFjS+MJPePaVZAD2JJ5m+RYeRPhFuML8M7qe9"
    "6ds5vc6MB75EeVI+hPSiPsllwL3FV5o+OsjAvmpDqry4VgK/upPmvhTKmj0L+RU9J4uVPXOFSb/i0YS/PsDxPZrIIT+s0Ts+"
    "9sJ2vmGHCT4sFRY/OGBuPkXwXz/App89WlPbPcBUFb6gTOM9BYY6PwBfjT58AYY+tqczv1PPlT5HBjk/c7dxvIc1Er0ijkE/"
    "cxVuP7DUSrsQ+aE/Ak/KPik9875sucg9dHptPd7Bdj5hCsC99CcYP5uAsr8cbFs+AKefu/E7s75Kwws+3MnBPspIgD4OQ3q+"
    "2Q+jP/NPET5dPcU+g3WDvmkdJL3lRxs/SIaAPzxqt74+8Zc/tmMMP6tfPj4UcrS+gLjlOhOCxT5yoAg/rUZQPF1gMD/0KrY+"
    "hLOyvRFNPL4EpgO9pgFjPp9OlT0YOuC72vIUvqA/q72z8h8+DMjEvQxdMb6wkbC9fTIcP3nbPb5k2U0/VH8xPtCF1jy+gJ+9"
    "W8JYvguksb0YDqU+4ccgv49wG78wTII9FLe3P5V0U0DhEPi/Bg3Vv/aRp8AcZRFAOhNVwJnbOUA4+STAmrEfQMN3cT8G4rM/"
    "f2EKvzCi3D+DASvALfrWPDj5FjvlfZo7uTKHPEYwQT1rC7O7lucVvUmSp7z0prQ8hcjJPH+/Qb1mt0Y8ToaBuspcSLwWeII9"
    "UmZVPa9o3bzpLrG6MkhYPBSosLvD5iq8CeTQvOMCxjw/BSu85RdSuwtuZzvxz8K7rZs1vGQP6bvNoJi7T9BQvHJW07xYQ/m8"
    "RGCqO1CZTDxWHl07ixmmPIKnw7zk2Ig8wEKAPGBrUTznKJ+8AY51u5WjqTx4WYI7o3G2uSkwWTybkeI8GLTavCkr7Lx2jsY6"
    "sVyLvPpwJrt40U+8jGKQPF6rsTzFh+k6xceTvJFv9Tu/y6E5gy8jvHVDxzs3jyS8bPyRvFN+WjyaPWg7icE+vMYn67xW6B89"
    "3vnqvHvXkjzCU6S8XwMZPPSl0Ly6oYG8kf0fO0shfry6J5i72VAFPLu54ju9s8U8yC6HvKENRLwe+Q67gXjLPLYN4LxVcry8"
    "no2UvC1eyTucwhq8eJy1vA4zLrv793G8Ayu2Oy01CzzZOXu8jMekOkvhkryXsI27AnFJPLZcQLsgkp+8yinuu/4W0TsU1P+7"
    "dHXuvLvWbTx/Ah27iXRNvMdrwjzC8im9HwNcvac84DxRUua8WRFRvN1slzy2U6g8iHdWvO1c2LxRtpm890yLu2QGIbyhj8Y6"
    "kDgevOxcALwkdqY8d/jGvCrwAb1Ghyc//sfFvSgpLDymBDa+smqMPfKWxz3JCuW+xgYGvhv3Jz3ZjYM8bP64PFQ25Tu9Nwk+"
    "xhVIvcOM5j21RGc9IP8Zuc4LDLtg9tK7ZlnkvFKYQDyovry8wsOXvOC0lDouP8+6ytLNPCHmV7zMBYi8wsL5vLVwaj1cBFW9"
    "E9eUvJDsILtfmyy7pBgEPBKQ9jzXbW28HYT0PNWVv7zAIvs6KoXFPO7KZTtoYhw8RDcTPQAyjD0kCyE9/WYQPZKYyzwxWNI8"
    "4pmmuhkTwzxG9NQ8cEK4PX1Yl7ytgjs9LyQUPekqg7zxDai71nXzOuBnVrkNfRC9MLfLPACppb3BLJC8qruqO5QccDuCzy08"
    "m6IRPf4tyDzIfuC5QKm9ulgIDDy5K4s87G1lu+PkKbxuvO87ZQRePDACfrodMSm890HQu65yBDtOkNe6l13Ju553LTvI4hm7"
    "BtIEO8VEgTu5H406w3SQvfEDB74OpKm7cBwQuISPlr3Z1wM+wCw6vMJKtL2JcYM9kFzqO+LhKzvkODu7vlmeO9OQsTzQu5y7"
    "7gSUPEScKzwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABDKqLsN2Qe7cHJLvGFiSrzMSqY72rW1u66WArwrZKm7"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAEps87io1BG24kpzOdL9xTglVrU4p7k1t9xYDjj9Xym39f2aODeIXTh5dWA58PiTty8qjDkJBWM5"
    "IgcStyjsGTkAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "/GmGOfJFSznUbl654y80uUpOVLnZN/A4yItOuDlIG7n7/cU3NIKUNmSloTjzMCW4/DXuOGMkxbdVFQA5/VgGOSzuObrlOsK5"
    "803cOZxjizg4ZNg4zMhQuoLM7DkybD85AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACRTNe6zKZXuQAAAAAAAAAA"
    "uWsKO1T4jDoKE1q7AAAAAMSiJTsXIHO60kEKuPMDgDvSqc87QBhnu6TZCTsxAag7Ew6rOjGhyzpf7fU4czPtOzsPjDrGCpq7"
    "zVD4umxBKTpbd3e6QUEpu+O6hDonyoe7YlzVuXpizDtCyb+7qcULvOJXYzoTcqi74Fl5OtBPm7tiZHQ6MBM9u11dFjnhHmQ6"
    "KIDEO+l6CDoYRCW73cJBPFSnvDyud7+7F2KQPDm/Jzx41Lc7m0EwOpPA/bqPHkA7uWywPEcJU7qJPlc8/WIYPM4kgzv6I0K7"
    "3Afru9C6aLsWgGO7WgzhOG05Gjv7nZK5r9m5O+nb3rtW2Re7mHUYu09a3zk6xfm6ZwaFu0M7srpBfkK9AoHKPB2Pij3I0nC9"
    "5N8hPdd+gL1efio+AOapPdLAej6mJ3U8k5xBPdKGIr2+kfm9bq2NPdL+Qj4A6CQ5yjKkPsG1LT6xQdG8vm5NvS+sKT6C7Pe9"
    "W8WKPu6N+T013q492a8DPZQRrb0WFlY9zyZlvpApfb5nqTU+b5ujvbpxLT1lNAo+sDIZvnbjnTtpX7y+DiUrvkqxcz6KG9m9"
    "levQPes5oz4IFVO+3Z6mPLwMPL35nNm9BpWnPsdOKL6RtLO9OAiQPoha0jxMwGa97Nq9PK7XP77lOZS9Vd/0Pbya3j24e9G9"
    "Vxa3vPhhTr3/qau9MVLJveBagL3gCqA961ATPkd0Az2OpqW9ly3zu/VFPj4Eexs8Ai02vaALhDn5n9C85nSYvP3cAD6ciFg9"
    "XE37vF/BEb5gvWK65WLsPaq9uT3Bh569d/6PPWorhjzaI+G9jh6UvaThcD0QbQQ+h376PXM3iz1GjQ88ZXQHu84KDz4zNu69"
    "DHkVPt1oBz7UZPg7/yD1vOIgkT20Mza9+rOJvQWGk77hnX48CEItvcfEIj5p6/a8Ok2/PPXG3bzCmGq+xs9Bvuk8Qz26DEG+"
    "pwBnPjQa7z1E6aS8n01pvYmtsT3QVz++ypr3PRqn0r11jHA9TUYsPfYLyztRO9w91JFdPZcRKT3zEwg+gkoHPSFvGj2sNyS8"
    "oIG3PUlPKzxCiec9cIsvPWh3Mr1G/B29eot5PBj/DL6Y9Aw9KrQ3vUDqMjyuH509QP6WPUOAerzW0/K9pGSePVAeljxkfiM+"
    "3eikPSp2D71FUT8+nqTEPP5up7uvMh67jMkjPUKIerxswMC7DghLvaR8k71QiuM6a7/qOxFQ8bxSq3m74BFwu48YOD1MC3s7"
    "mEdYPAkxqT2Sqec80TEePfLIiT2w3/Q9bLsgPbGp0LuNxDM8tY8PvfG9Vj00mCU9ArpZO8NNGjzkxKs97FNAvC3BlL3Vto89"
    "gbPSvLVEmT0Z1+c8h4O4PfE5lb0MJA++UdrgPQjQE72LG749J0cVPs0wvjwLi5896aKMPdwjSbut/NA8Y6qbPf/ePj38uZo9"
    "qlAlvcJpiT1YrBU8FBK2PBQStjxQWCQ8gsv9OxBQej0UWNg8MuADPlu/Zz1nSTC9pcX1PX98AT1/fAE9urEaPVNxAz67TYM8"
    "a5JiPUq4L724c/M7+hjAPbhz8zu3TOU9ex0Lva2WBj3tA5A8RvwdvXqLeTxJTys8eot5PKRknj0Y/wy+QOoyPK4fnT0AAACA"
    "AAAAAAAAAAAAAACAAAAAAAAAAAAAAACAAAAAgAAAAAAAAAAAAAAAgAAAAIAAAAAAAAAAAAAAAAAAAACAAAAAgAAAAAAAAAAA"
    "AAAAgAAAAIAAAACAAAAAgAAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAAAAAAAAAAAAAAACzXDzVpzG9kZkGvcpUtT1QbFS9"
    "gGxAPIWRqL1QbFS9ASqKvHixd7u6rW87eLF3u2zAwLuYR1g8DghLvaR8k70AAACAAAAAAAAAAIAAAACAAAAAAAAAAAAAAACA"
    "AAAAgAAAAIAAAACAAAAAgAAAAIAAAAAAAAAAgAAAAIAAAACAAAAAgAAAAIAAAACAAAAAgBymH7uJsdg9HKYfu8rVij1b6w49"
    "EfNUPVmXsLxa1lE77scEPTtSLbvJT4Y9QUDZPd3Y4T1zzII9oa5gPY3VJr1Rgfw8T7CsPdb8njzW/J48MBlMPTAZTD1D7JM9"
    "NT0nPbDf9D3xvVY97FNAvJKp5zwAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAN4yUT0/+XQ9RU4UvPFwoj026Xo9"
    "Nul6PfqWkL36lpC9UdrgPS3BlL3xOZW9gbPSvAAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAAAAAAAAAAAAAAAAAAIAAAACA"
    "AAAAAAAAAAAAAAAAAAAAgAAAAAAAAAAAAAAAgAAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAgA=="
)


@torch.no_grad()
def test_encoding_in_chunks_of_rows_equals_encoding_at_once():
    # outside autograd the per-event buffers are gathered a few rows at a time (memory)
    torch.manual_seed(0)
    data = generate(SynthConfig(n_users=12, n_items=15, mean_length=6, seed=1))
    model = build("demn", data.n_users, data.n_items, PINNED_PARAMS).eval()
    model.prepare(data)
    users = torch.arange(7)
    history = torch.randint(0, data.n_items, (7, 9), generator=torch.Generator().manual_seed(2))
    mask = torch.arange(9)[None] < torch.tensor([9, 1, 4, 7, 3, 9, 2])[:, None]
    whole = model.encode(users, history, mask)
    model.ENCODE_CHUNK_ELEMENTS = 1                                 # one row per chunk
    assert torch.allclose(model.encode(users, history, mask).values, whole.values, atol=1e-6)
