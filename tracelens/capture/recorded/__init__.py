"""What a recording writes: run.json (``rundoc``), how the run ended (``outcome``, torch-free),
the TensorBoard copy (``tensorboard``)."""
