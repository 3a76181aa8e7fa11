"""`python -m training.pretrain` (also under `accelerate launch -m training.pretrain`)."""

from training.pretrain.train import main

if __name__ == "__main__":
    main()
