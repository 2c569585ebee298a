"""``python -m ivfuse`` (used by torchrun for distributed training)."""

from .cli import main

if __name__ == "__main__":
    main()
