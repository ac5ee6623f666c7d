"""Adversarial negative sampling (IRGAN / KBGAN style): a generator proposes hard negatives.

NMRN (KDD 2018) replaces uniform negatives by a GAN sampler: a generator G, conditioned on the
user, proposes negatives; the discriminator is the recommender itself. The generator's design is
not known (spec ``rum-ksr-stamp-nmrn.md`` §4.3); this is our reconstruction:

* G scores (user, candidate) pairs with its own small MF, g(u, j) = p_uᵀq_j + b_j, and samples
  from softmax(g / τ) over a **candidate pool**: P items drawn uniformly among the user's
  non-positives (``train.gan_pool``), so a step costs O(b·P), not O(b·n_items). Sampling is
  Gumbel-max with noise drawn from the trainer's generator (a seeded run repeats exactly).
* Reward of a sampled negative j: the hinge loss it gives the recommender,
  max(0, γ − s⁺ + s_j) — how hard j is for it (0: already beaten by the margin).
* G is trained by REINFORCE with the batch-mean reward as baseline:
  L_G = −mean((r − r̄) · log p_G(j)).
* Pretrain, then alternate: the recommender first trains with uniform negatives
  (``train.gan_warmup_epochs``); G is then pretrained as a BPR recommender on the training
  pairs (IRGAN's G pretraining: items the user plausibly likes but has not consumed are the hard
  ones), and from then on every micro-batch has one recommender step and one G step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GeneratorNet(nn.Module):
    """g(u, j) = p_uᵀq_j + b_j. users [B], items [B, P] → [B, P]."""

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float = 0.1):
        super().__init__()
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        p = self.user_embedding(users)[:, None, :]
        return (p * self.item_embedding(items)).sum(-1) + self.item_bias(items)[..., 0]


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel noise −log(−log U): argmax(logits + noise) samples softmax(logits)."""
    u = torch.rand(shape, generator=generator).clamp(1e-10, 1 - 1e-7)
    return -torch.log(-torch.log(u))


class AdversarialSampler:
    """The generator G with its own optimizer (see the module docstring).

    Parameters
    ----------
    n_users, n_items : int
    dim : G's embedding size
    lr : G's Adam learning rate
    temperature : τ of G's softmax over the pool
    seed : initialisation of G
    """

    def __init__(self, n_users: int, n_items: int, *, dim: int = 32, lr: float = 1e-3,
                 temperature: float = 1.0, seed: int = 0):
        if temperature <= 0:
            raise ValueError(f"the generator's temperature must be positive, got {temperature}")
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.net = GeneratorNet(n_users, n_items, dim)
        self.temperature = temperature
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.pretrained = False

    def logits(self, users: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        return self.net(users, pool) / self.temperature

    @torch.no_grad()
    def choose(self, users: torch.Tensor, pool: torch.Tensor, noise: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample N negatives per row from softmax(g/τ) over pool [B, P], with Gumbel noise
        [B, N, P]. → (items [B, N], their positions in the pool [B, N])."""
        picked = (self.logits(users, pool)[:, None, :] + noise).argmax(-1)
        return pool.gather(1, picked), picked

    def reinforce(self, users: torch.Tensor, pool: torch.Tensor, picked: torch.Tensor,
                  reward: torch.Tensor) -> float:
        """One REINFORCE step: raise log p_G of negatives with above-average reward [B, N]."""
        log_p = F.log_softmax(self.logits(users, pool), dim=-1).gather(1, picked)
        advantage = (reward - reward.mean()).detach()
        loss = -(advantage * log_p).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def pretrain(self, users: torch.Tensor, items: torch.Tensor, negatives, generator: torch.Generator,
                 *, epochs: int, batch_size: int) -> None:
        """G as a BPR recommender on the training pairs (users, items [N]); ``negatives`` is a
        :class:`~memrec.sampling.NegativeSampler` (uniform non-positives)."""
        for _ in range(epochs):
            order = torch.randperm(len(users), generator=generator)
            for start in range(0, len(users), batch_size):
                rows = order[start:start + batch_size]
                u = users[rows]
                candidates = torch.cat([items[rows, None], negatives.sample(u, 1, generator)], 1)
                scores = self.net(u, candidates)
                loss = -F.logsigmoid(scores[:, 0] - scores[:, 1]).mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
        self.pretrained = True

    def state_dict(self) -> dict:
        """G's weights, its optimizer's state and the pretrained flag: tensors and plain values
        only, so a checkpoint holding them loads with ``torch.load(weights_only=True)``."""
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "pretrained": torch.tensor(self.pretrained)}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (KeyError / RuntimeError / ValueError when it
        does not fit this generator)."""
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.pretrained = bool(state["pretrained"])


__all__ = ["AdversarialSampler", "GeneratorNet", "gumbel_noise"]
