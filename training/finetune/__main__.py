"""`python -m training.finetune` (also under `accelerate launch -m training.finetune`)."""

from training.finetune.cli import main

if __name__ == "__main__":
    main()
