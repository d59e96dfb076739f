"""The PyTorch side of benchmarks/lm_torch_vs_flax.py: a plain eager training loop of
jaxfw's lm_tiny transformer, run by a Python that has torch (never jaxfw's venv).

The model is the one in jaxfw/models/transformer.py, layer for layer: token embedding +
learned positions (both N(0, 0.02)), pre-LN blocks (LayerNorm eps 1e-6 as Flax's),
causal multi-head attention with bias-free query/key/value/out projections
(`F.scaled_dot_product_attention(is_causal=True)`), an MLP with biases and tanh-GELU
(`flax.linen.gelu` defaults to approximate=True), a final LayerNorm and a vocabulary head
with bias; mean next-token cross-entropy; AdamW (decay on >= 2-dim weights) after
`clip_grad_norm_(1.0)`. Nothing compiled: no torch.compile, default eager kernels.

Protocol (stdin/stdout, one line each): starts with a JSON line of settings as argv[1]
and answers a JSON "ready" line after `warmup` steps; then each input line `N` runs N
steps and answers {"seconds": wall time of the N steps, "loss": last loss}; EOF ends.

Learning mode (benchmarks/lm_learning.py: settings carry "learning", an .npz of the
training batches in order and the held-out windows): jaxfw's initialisation scheme
(kernels truncated-normal lecun, fan-in; biases zero; embeddings and positions N(0, 0.02))
instead of torch's defaults, the settings' AdamW, clipping and schedule (constant or
warmup-cosine), one pass over the batches, and one answer line
{"held_out": {step: mean next-byte cross-entropy}, "seconds": ..., "torch": version}.
"""

import json
import math
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.ln2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, mlp)
        self.fc2 = nn.Linear(mlp, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln1(x)

        def heads(y: torch.Tensor) -> torch.Tensor:  # [b, t, d] -> [b, heads, t, d/heads]
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = heads(self.query(h)), heads(self.key(h)), heads(self.value(h))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


class Transformer(nn.Module):
    def __init__(self, vocab: int, layers: int, dim: int, heads: int, mlp: int, length: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.positions = nn.Parameter(torch.randn(length, dim) * 0.02)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp) for _ in range(layers))
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.positions[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def lecun_init(model: nn.Module) -> None:
    """Flax's lecun_normal (truncated at 2 std, std corrected for the truncation) on every
    Linear weight, zero biases: jaxfw's scheme, not torch's kaiming-uniform default."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                fan_in = module.weight.shape[1]
                std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
                nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
                if module.bias is not None:
                    module.bias.zero_()


def learning_rate(s: dict, step: int) -> float:
    """The settings' schedule at 0-based `step`, as optax's (constant, warmup_cosine)."""
    warmup = min(s["warmup_steps"], s["steps"])
    if step < warmup:
        return s["lr"] * step / warmup
    if s["schedule"] == "constant":
        return s["lr"]
    end = s["lr"] * s["final_lr_fraction"]
    decay = max(s["steps"], warmup + 1) - warmup
    progress = min(step - warmup, decay) / decay
    return end + (s["lr"] - end) * 0.5 * (1 + math.cos(math.pi * progress))


def held_out_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(inputs), 64):
            logits = model(inputs[start : start + 64])
            y = targets[start : start + 64]
            total += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
    return total / targets.numel()


def learn(s: dict) -> None:
    import numpy as np

    torch.manual_seed(s["seed"])
    data = np.load(s["learning"])
    batches = zip(data["inputs"], data["targets"], strict=True)
    held = (
        torch.from_numpy(data["held_inputs"]).long(),
        torch.from_numpy(data["held_targets"]).long(),
    )
    model = Transformer(s["vocab"], s["layers"], s["embed"], s["heads"], s["mlp"], s["seq_len"])
    lecun_init(model)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s["weight_decay"]}, {"params": no_decay}],
        lr=s["lr"], betas=(s["b1"], s["b2"]), eps=s["eps"], weight_decay=0.0,
    )  # fmt: skip
    losses, start = {}, time.perf_counter()
    for step, (x, y) in enumerate(batches, 1):
        for group in opt.param_groups:
            group["lr"] = learning_rate(s, step - 1)
        logits = model.train()(torch.from_numpy(x).long())
        loss = F.cross_entropy(logits.flatten(0, 1), torch.from_numpy(y).long().flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s["clip"] is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), s["clip"])
        opt.step()
        if step in s["eval_steps"]:
            losses[step] = held_out_loss(model.eval(), *held)
    seconds = round(time.perf_counter() - start, 1)
    print(json.dumps({"held_out": losses, "seconds": seconds, "torch": torch.__version__}))


def main() -> None:
    s = json.loads(sys.argv[1])
    if "learning" in s:
        learn(s)
        return
    torch.manual_seed(s["seed"])
    if s.get("threads"):
        torch.set_num_threads(s["threads"])
    model = Transformer(
        s["vocab"], s["layers"], s["embed"], s["heads"], s["mlp"], s["seq_len"]
    ).train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s["weight_decay"]}, {"params": no_decay}],
        lr=s["lr"],
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
    )
    gen = torch.Generator().manual_seed(s["seed"])
    shape = (s["batch"], s["seq_len"] + 1)
    batches = [torch.randint(0, s["vocab"], shape, generator=gen) for _ in range(8)]
    count = [0]

    def step() -> torch.Tensor:
        batch = batches[count[0] % len(batches)]
        count[0] += 1
        inputs, targets = batch[:, :-1], batch[:, 1:]
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s["clip"])
        opt.step()
        return loss

    for _ in range(s["warmup"]):
        step()
    params = sum(p.numel() for p in model.parameters())
    ready = {
        "ready": True,
        "torch": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "params": params,
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        n = int(line)
        start = time.perf_counter()
        for _ in range(n):
            loss = step()
        value = float(loss.detach())  # the host sync, as the JAX side's float(loss)
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "loss": value}), flush=True)
        assert math.isfinite(value), value


if __name__ == "__main__":
    main()
