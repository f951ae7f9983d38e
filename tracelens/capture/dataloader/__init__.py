"""Patches on torch's DataLoader and profiler, and the loaders' bookkeeping: installed in the
script's process; ``worker`` runs inside the DataLoader worker processes."""
