"""`polyhost/pytorch`: serves PyTorch models the way SageMaker's PyTorch inference container does.

Run as `python -m polyhost.stacks.pytorch`. It speaks only the container contract; torch is
imported while the model loads, so the port answers `/ping` (503, loading) at once.
"""
