"""The five seed documents' words and numbers that the claims test, copied here (the
project never reads the seeds themselves).

>>> from flopgrad.claims.seeds import SEEDS, SEED_000_MLP
>>> sorted(SEEDS), SEED_000_MLP
(['000', '001', '002', '003', '004'], (784, 128, 64, 10))
"""

from __future__ import annotations

__all__ = ["SEEDS", "SEED_000_MLP", "SEED_000_FORWARD", "SEED_000_PER_EXAMPLE",
           "SEED_000_EXAMPLES", "SEED_000_EPOCH"]

# number -> title of the seed document
SEEDS = {
    "000": "The Most Computationally Expensive Operation in Backpropagation (interview answer)",
    "001": "LLM System Design Interview #24 - Why Backprop Is 3x Harder Than You Think",
    "002": "Why should one expect the backward pass to take twice as long as the forward "
           "pass? (Q&A thread)",
    "003": "Backpropagation: From Intuition to FLOPs (blog post, cs336 notes)",
    "004": "Backpropagation (interview card: foundations, difficulty 4)",
}

# seed 000's worked example: a 784-128-64-10 network, FLOPs per training example, an epoch
SEED_000_MLP = (784, 128, 64, 10)
SEED_000_FORWARD = 218_368  # "Total Forward: 218,368 FLOPs"
SEED_000_PER_EXAMPLE = 655_104  # "Total per training example: ~655,104 FLOPs"
SEED_000_EXAMPLES = 60_000  # "For 60,000 training examples"
SEED_000_EPOCH = 39.3e9  # "39.3 billion FLOPs per epoch!"

QUOTES = {
    "matmul-flops": ("000", "The most computationally expensive operation in backpropagation "
                            "is matrix multiplication."),
    "matmul-time": ("000", "While activation functions (ReLU, sigmoid) are applied "
                           "element-wise, they're computationally trivial compared to matrix "
                           "operations."),
    "width-4x": ("000", "Doubling layer width: 4x more operations"),
    "epoch-flops": ("000", "Total per training example: ~655,104 FLOPs. For 60,000 training "
                           "examples: 39.3 billion FLOPs per epoch!"),
    "backward-2x-flops": ("001", "The Backward Pass is twice as expensive as the Forward "
                                 "Pass. [...] Backward Pass: 4 FLOPs per param (dW calculation "
                                 "+ dA calculation)."),
    "six-nd": ("001", "This makes the backward pass 2x the cost of the forward pass, meaning "
                      "the true FLOP count is 6*P*D, not 2."),
    "backward-2x-time": ("002", "as a rule of thumb, a backward pass in a neural network "
                                "should take about twice as long as the forward pass."),
    "exact-2x": ("003", "num_backward_flops = 4 * B * D * C + 4 * B * D * D. This is exactly "
                        "2× the number of FLOPs compared to the forward pass."),
    "naive-fd": ("004", "Naive approach: Compute each ∂L/∂w_i independently → O(n) forward "
                        "passes for n parameters."),
    "per-edge": ("004", "Efficiency: Time: O(1) cost per edge in computation graph"),
    "activation-memory": ("004", "Space: Store activations for backward pass (main memory "
                                 "cost)"),
    "checkpointing": ("004", "Activation checkpointing: Trade compute for memory (recompute "
                             "activations)"),
    "vanishing-gradients": ("004", "Vanishing gradients: ∂L/∂z → 0 in deep nets (sigmoid, "
                                   "tanh)"),
}
