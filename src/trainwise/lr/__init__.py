"""The LR range test: the sweep, its result, the suggestion rules."""
