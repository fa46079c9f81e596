"""Ten lines of flopgrad: a gradient by reverse mode, checked against forward mode."""

import flopgrad as fg

fg.manual_seed(0)
W = fg.randn(3, 2, requires_grad=True)          # a weight
x = fg.tensor([[1.0, 2.0, 3.0]])                # an input that needs no gradient
loss = (x @ W).tanh().pow(2).sum()
loss.backward()                                 # reverse mode: dloss/dW
print("loss   ", loss.item())
print("dloss/dW\n", W.grad)
_, dW00 = fg.jvp(lambda w: (x @ w).tanh().pow(2).sum(), (W.detach(),), (fg.eye(3, 2),))
print("forward mode, d/dW along eye(3,2):", dW00.item(), "=", (W.grad * fg.eye(3, 2)).sum().item())
