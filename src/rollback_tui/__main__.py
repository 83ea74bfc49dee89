"""`python -m rollback_tui` and the `rollback-tui` console script."""

from rollback_tui.cli import main

if __name__ == "__main__":
    main()
