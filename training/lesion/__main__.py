"""`python -m training.lesion` (also under `accelerate launch -m training.lesion`)."""

from training.lesion.train import main

if __name__ == "__main__":
    main()
