"""A small PyTorch MLP on digits-sized input (8x8 images: 64 features, 10 classes), the
example of `flopgrad bill --torch`:

    flopgrad bill --torch examples/torch_mlp.py:model_and_batch

The function returns (model, batch); the command runs one AdamW training step of the
model on the batch under flopgrad.torch.profile and prints its bill by layer. The forward
takes (x, y) and returns the cross-entropy loss, a 0-d tensor, which is the step's loss.
The values are random: what a step costs does not depend on them.
"""

import torch


class DigitsMLP(torch.nn.Module):
    """64 -> hidden -> 10, ReLU between; with labels the forward returns the loss."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.hidden = torch.nn.Linear(64, hidden)
        self.act = torch.nn.ReLU()
        self.out = torch.nn.Linear(hidden, 10)

    def forward(self, x, y=None):
        logits = self.out(self.act(self.hidden(x)))
        return logits if y is None else torch.nn.functional.cross_entropy(logits, y)


def model_and_batch():
    """The model and a batch of 32 digits-sized inputs with their labels."""
    torch.manual_seed(0)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    return DigitsMLP(), (x, y)


if __name__ == "__main__":
    from flopgrad.torch.step import train_step_bill

    print(train_step_bill(*model_and_batch()).table(by="scope"))
