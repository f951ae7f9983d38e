"""What is read from the machine: its facts (cores, threads, GPUs, versions), the CPU supply
(who else used the cores), and per-process telemetry sampled during the window."""
