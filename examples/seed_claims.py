"""The seeds' backprop folklore, measured: seed 000's MLP and seed 003's two-matmul example.

Run: python examples/seed_claims.py
"""

import flopgrad as fg
import flopgrad.nn.functional as F
from flopgrad.nn import Parameter


def seed_000() -> None:
    """784-128-64-10 MLP, batch 1, ReLU, cross-entropy: where the backward is not 2x."""
    fg.manual_seed(0)
    sizes = [784, 128, 64, 10]
    layers = [(Parameter(fg.randn(o, i) * (2 / i) ** 0.5), Parameter(fg.zeros(o)))
              for i, o in zip(sizes, sizes[1:], strict=False)]
    x, y = fg.randn(1, 784), fg.tensor([3])
    with fg.profile() as bill:
        h = x
        for k, (w, b) in enumerate(layers):
            with fg.scope(f"fc{k + 1}"):
                h = F.linear(h, w, b)
                if k < len(layers) - 1:
                    h = F.relu(h)
        loss = F.cross_entropy(h, y)
        loss.backward()
    print("== seed 000: MLP 784-128-64-10, batch 1 ==")
    print(bill.table(by="scope"))
    print(f"forward tensor FLOPs  {bill.flops('forward', kind='tensor'):,}  (seed: 218,368)")
    print(f"backward tensor FLOPs {bill.flops('backward', kind='tensor'):,}  (2x would be "
          f"{2 * bill.flops('forward', kind='tensor'):,})")
    print(f"backward/forward (matmul FLOPs) {bill.backward_forward_ratio('tensor'):.3f}\n")


def seed_003(B: int = 32, D: int = 512, C: int = 10) -> None:
    """X (BxD) @ W1 (DxD) @ W2 (DxC), loss = mean(H2**2): the FLOP count by hand."""
    fg.manual_seed(0)
    W1, W2 = Parameter(fg.randn(D, D)), Parameter(fg.randn(D, C))
    for x_needs_grad in (False, True):
        X = fg.randn(B, D, requires_grad=x_needs_grad)
        W1.grad = W2.grad = None  # a fresh step: no accumulation into last run's gradients
        with fg.profile() as bill:
            loss = ((X @ W1 @ W2) ** 2).mean()
            loss.backward()
        print(f"== seed 003: B={B} D={D} C={C}, X needs grad: {x_needs_grad} ==")
        print(bill.table())
        fwd, bwd = bill.flops("forward", kind="tensor"), bill.flops("backward", kind="tensor")
        print(f"forward  {fwd:,} = 2BDD + 2BDC = {2 * B * D * D + 2 * B * D * C:,}")
        extra = 4 if x_needs_grad else 2
        print(f"backward {bwd:,} = 4BDC + {extra}BDD = {4 * B * D * C + extra * B * D * D:,}")
        print(f"  dW {bill.flops('backward', role='weight', kind='tensor'):,}   "
              f"dX {bill.flops('backward', role='input', kind='tensor'):,}\n")


if __name__ == "__main__":
    seed_000()
    seed_003()
