"""usvcl: self-supervised contrastive learning from ultrasound videos (arXiv 2408.10600), as transformers models."""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    AutoModelForSemanticSegmentation,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_lesion import LesionConfig
from .configuration_usvcl import UsvclConfig
from .image_processing_usvcl import UsvclImageProcessor
from .losses import hard_triplet_loss, info_nce_loss
from .modeling_lesion import LesionPreTrainedModel, LesionSegmentationModel, LesionSegmentationOutput
from .modeling_usvcl import (
    UsvclContrastiveOutput,
    UsvclForContrastivePretraining,
    UsvclForImageClassification,
    UsvclImageClassifierOutput,
    UsvclModel,
    UsvclModelOutput,
    UsvclPreTrainedModel,
)
from .pipeline_usvcl import TASK as TWO_VIEW_TASK
from .pipeline_usvcl import UsvclTwoViewPipeline

IMAGE_PROCESSOR_BACKENDS = ("pil", "torchvision")


def register_auto_classes() -> None:
    """Register the usvcl classes with the Auto classes, and for `auto_map` + code copying in `save_pretrained`."""
    AutoConfig.register(UsvclConfig.model_type, UsvclConfig, exist_ok=True)
    AutoModel.register(UsvclConfig, UsvclModel, exist_ok=True)
    AutoModelForImageClassification.register(UsvclConfig, UsvclForImageClassification, exist_ok=True)
    AutoModelForPreTraining.register(UsvclConfig, UsvclForContrastivePretraining, exist_ok=True)
    # One implementation (numpy + Pillow) serves every backend name: AutoImageProcessor asks for "torchvision" when
    # torchvision is installed and warned "Requested torchvision backend is not available" when only "pil" was known.
    backends = {backend: UsvclImageProcessor for backend in IMAGE_PROCESSOR_BACKENDS}
    AutoImageProcessor.register(UsvclConfig, image_processor_classes=backends, exist_ok=True)
    UsvclConfig.register_for_auto_class()
    UsvclModel.register_for_auto_class("AutoModel")
    UsvclForImageClassification.register_for_auto_class("AutoModelForImageClassification")
    UsvclForContrastivePretraining.register_for_auto_class("AutoModelForPreTraining")
    UsvclImageProcessor.register_for_auto_class("AutoImageProcessor")
    AutoConfig.register(LesionConfig.model_type, LesionConfig, exist_ok=True)
    AutoModel.register(LesionConfig, LesionSegmentationModel, exist_ok=True)
    AutoModelForSemanticSegmentation.register(LesionConfig, LesionSegmentationModel, exist_ok=True)
    AutoImageProcessor.register(LesionConfig, slow_image_processor_class=UsvclImageProcessor, exist_ok=True)
    LesionConfig.register_for_auto_class()
    LesionSegmentationModel.register_for_auto_class("AutoModelForSemanticSegmentation")


def register_two_view_pipeline() -> None:
    """Register the `usvcl-two-views` task (once), so that `pipeline(TWO_VIEW_TASK, model=...)` finds it in this
    process; an exported folder names it in `config.custom_pipelines` for `trust_remote_code` loading."""
    if TWO_VIEW_TASK not in PIPELINE_REGISTRY.supported_tasks:
        PIPELINE_REGISTRY.register_pipeline(TWO_VIEW_TASK, pipeline_class=UsvclTwoViewPipeline,
                                            pt_model=AutoModelForImageClassification, type="image")


register_auto_classes()
register_two_view_pipeline()

__all__ = [
    "LesionConfig",
    "LesionPreTrainedModel",
    "LesionSegmentationModel",
    "LesionSegmentationOutput",
    "UsvclConfig",
    "UsvclContrastiveOutput",
    "UsvclForContrastivePretraining",
    "UsvclForImageClassification",
    "UsvclImageClassifierOutput",
    "UsvclImageProcessor",
    "UsvclModel",
    "UsvclModelOutput",
    "UsvclPreTrainedModel",
    "UsvclTwoViewPipeline",
    "hard_triplet_loss",
    "info_nce_loss",
]
