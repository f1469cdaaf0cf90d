import torch

# One intra-op thread: the test machine's 2 cores are shared, and 2-thread parallel regions stall badly there.
torch.set_num_threads(1)
