"""The pieces of ``evaluate``: fine-tuning, generation, pairwise judging, metrics, the efficiency graph.

Each module imports torch, peft or matplotlib only inside the functions that need them, so
``dslrun check|plan`` on a spec with an ``evaluate`` step stays light.
"""
