"""Exit codes of every `decision-seq` command, defined once (README: "Resuming, preemption and exit codes")."""

EXIT_OK = 0
EXIT_UNEXPECTED = 1  # an unexpected error (traceback), a disk error, or a sweep in which some jobs failed
EXIT_SWEEP_FAILED = EXIT_UNEXPECTED  # some jobs of a -m sweep did not complete; the others' results are kept
EXIT_BAD_INPUT = 2  # a known input error (bad value, missing dataset, foreign checkpoint...): one line
EXIT_NONFINITE = 3  # NaN/inf loss or gradient norm; checkpoints/last.pt is the last good state
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by a signal after saving checkpoints/last.pt; relaunch to resume
