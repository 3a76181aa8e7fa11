"""Shared fixtures: tiny usvcl configs and models (small timm backbones, small images)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from tests.helpers.demo_fixtures import TINY_IMAGE_SIZE  # imports usvcl_hf: after the offline settings

TINY_BACKBONE = "resnet18"


@pytest.fixture
def tiny_config_kwargs() -> dict:
    """Keyword arguments for a fast `UsvclConfig`."""
    return dict(
        backbone=TINY_BACKBONE,
        image_size=TINY_IMAGE_SIZE,
        embedding_dim=16,
        projection_hidden_dim=32,
        classifier_hidden_dim=8,
        num_positives=2,
        num_negatives=3,
    )
