"""The script's process: the recording child, the in-script ``with tracelens.profile()``, the
sweep's timing trial, and the capture session (profiler window) they run the script under."""
