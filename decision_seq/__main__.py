"""`python -m decision_seq ...` is `decision-seq ...`."""

from decision_seq.cli import main

if __name__ == "__main__":
    main()
